//! What keepmover does the way Go does it, because keep-rsync's and keep-exercise's users
//! script against Go's behaviour: the `flag` package's parser and error texts, Go durations
//! (`336h`, `1m2.5s`), and the `log` package's timestamp. Nothing here knows about Keep.

pub mod duration;
pub mod fixed;
pub mod flag;

/// Go's `log` prefix: local time as `YYYY/MM/DD HH:MM:SS`.
pub fn log_timestamp() -> String {
    let mut text = String::with_capacity(19);
    push_log_timestamp(&mut text);
    text
}

/// [`log_timestamp`] appended to `out` (no allocation: the per-block log lines use it).
pub fn push_log_timestamp(out: &mut String) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as libc::time_t)
        .unwrap_or(0);
    // One `localtime_r` and one format a second per thread, however many lines.
    thread_local! {
        static LAST: std::cell::RefCell<(libc::time_t, String)> = const { std::cell::RefCell::new((-1, String::new())) };
    }
    LAST.with(|last| {
        let mut last = last.borrow_mut();
        if last.0 != now {
            *last = (now, format_local(now));
        }
        out.push_str(&last.1);
    })
}

/// `now` (seconds since the epoch) as Go's `log` prints it, in local time.
fn format_local(now: libc::time_t) -> String {
    local_time(now).map_or_else(
        || "1970/01/01 00:00:00".to_string(),
        |tm| {
            format!(
                "{:04}/{:02}/{:02} {:02}:{:02}:{:02}",
                tm.tm_year + 1900,
                tm.tm_mon + 1,
                tm.tm_mday,
                tm.tm_hour,
                tm.tm_min,
                tm.tm_sec
            )
        },
    )
}

/// `localtime_r`: the C library knows the time zone rules (TZ, /etc/localtime) as Go does.
#[allow(unsafe_code)]
fn local_time(seconds: libc::time_t) -> Option<libc::tm> {
    // SAFETY: `tm` is plain old data that localtime_r fully initialises on success; we pass
    // valid pointers to a live time_t and tm, and read `tm` only after checking the result.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    // SAFETY: as above; both pointers are valid for the duration of the call.
    let ok = unsafe { !libc::localtime_r(&seconds, &mut tm).is_null() };
    ok.then_some(tm)
}

#[cfg(test)]
mod tests {
    #[test]
    fn timestamp_has_go_shape() {
        let ts = super::log_timestamp();
        assert_eq!(ts.len(), 19, "{ts}");
        assert_eq!(&ts[4..5], "/");
        assert_eq!(&ts[10..11], " ");
    }
}
