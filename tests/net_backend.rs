//! The driver choice: `io_uring_available()` agrees with what can actually be built, `Auto`
//! resolves to it, and names parse and print.

use keepmover::net::{build_runtime, io_uring_available, IoBackend};

#[test]
fn probe_agrees_with_forced_build() {
    let available = io_uring_available();
    assert_eq!(build_runtime(IoBackend::Uring).is_ok(), available);
    let (_, auto) = build_runtime(IoBackend::Auto).unwrap();
    assert_eq!(
        auto,
        if available {
            IoBackend::Uring
        } else {
            IoBackend::Epoll
        }
    );
    let (_, epoll) = build_runtime(IoBackend::Epoll).unwrap();
    assert_eq!(epoll, IoBackend::Epoll);
    // The probe is stable.
    assert_eq!(io_uring_available(), available);
    eprintln!("io_uring available: {available}");
}

#[test]
fn names() {
    for (text, backend) in [
        ("auto", IoBackend::Auto),
        ("uring", IoBackend::Uring),
        ("epoll", IoBackend::Epoll),
    ] {
        assert_eq!(text.parse::<IoBackend>().unwrap(), backend);
        assert_eq!(backend.to_string(), text);
    }
    assert_eq!("io_uring".parse::<IoBackend>().unwrap(), IoBackend::Uring);
    assert!("kqueue".parse::<IoBackend>().is_err());
}
