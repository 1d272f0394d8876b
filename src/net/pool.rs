//! Keep-alive connection pools per origin and the per-origin connection cap. A connection
//! counts against its origin's cap from the moment its connect starts until it is closed,
//! whether it is carrying a request or idle in the pool; a request to an origin at its cap
//! waits (async, first come first served) for a pooled connection or a free slot.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::rc::{Rc, Weak};
use std::time::Instant;

use futures_channel::oneshot;

use crate::net::client::ClientConfig;
use crate::net::conn::Conn;
use crate::net::error::NetError;
use crate::net::origin::Origin;
use crate::net::tls::{client_config, TlsPolicy};

/// Per-origin bookkeeping.
#[derive(Default)]
struct OriginState {
    /// Idle connections, oldest first (so the expired ones are always a prefix).
    idle: VecDeque<Box<Conn>>,
    /// Live connections (checked out, idle or connecting).
    open: usize,
    /// Requests waiting for a connection, oldest first.
    waiters: VecDeque<oneshot::Sender<()>>,
}

pub(crate) struct Inner {
    pub(crate) config: ClientConfig,
    origins: RefCell<HashMap<Origin, OriginState>>,
    pub(crate) tls_policies: RefCell<HashMap<Origin, TlsPolicy>>,
    pub(crate) connections_opened: Cell<u64>,
    me: Weak<Inner>,
}

/// A connection's slot under its origin's cap; freeing it (when the connection is dropped)
/// lets the oldest waiter go.
pub(crate) struct Slot {
    origin: Origin,
    inner: Weak<Inner>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(inner) = self.inner.upgrade() {
            inner.release(&self.origin);
        }
    }
}

impl Inner {
    pub(crate) fn new(config: ClientConfig) -> Rc<Inner> {
        Rc::new_cyclic(|me| Inner {
            config,
            origins: RefCell::new(HashMap::new()),
            tls_policies: RefCell::new(HashMap::new()),
            connections_opened: Cell::new(0),
            me: me.clone(),
        })
    }

    fn release(&self, origin: &Origin) {
        // try_borrow_mut: a slot may be dropped while the map is borrowed (a connection
        // closed during pool maintenance); that path wakes waiters itself.
        let Ok(mut origins) = self.origins.try_borrow_mut() else {
            return;
        };
        if let Some(state) = origins.get_mut(origin) {
            state.open = state.open.saturating_sub(1);
            wake_one(state);
        }
    }

    /// Closes connections; called outside any borrow of the map, so each one's slot is
    /// released (and a waiter woken) as it drops.
    fn close_all(&self, conns: impl IntoIterator<Item = Box<Conn>>) {
        conns.into_iter().for_each(drop);
    }

    pub(crate) fn idle_connections(&self, origin: &Origin) -> usize {
        self.origins
            .borrow()
            .get(origin)
            .map_or(0, |s| s.idle.len())
    }

    /// Live connections to `origin` (busy, idle or connecting).
    pub(crate) fn open_connections(&self, origin: &Origin) -> usize {
        self.origins.borrow().get(origin).map_or(0, |s| s.open)
    }

    pub(crate) fn forget_pool(&self, origin: &Origin) {
        let idle = self
            .origins
            .borrow_mut()
            .get_mut(origin)
            .map(|s| std::mem::take(&mut s.idle))
            .unwrap_or_default();
        self.close_all(idle);
    }

    /// A pooled connection that still looks alive, newest first; expired or dead ones are
    /// closed on the way.
    fn take_pooled(&self, origin: &Origin) -> Option<Box<Conn>> {
        let mut dead = Vec::new();
        let found = {
            let mut origins = self.origins.borrow_mut();
            let state = origins.get_mut(origin)?;
            let now = Instant::now();
            let mut found = None;
            while let Some(mut conn) = state.idle.pop_back() {
                let idle_for = now.saturating_duration_since(conn.idle_since);
                if idle_for > self.config.pool_idle_expiry {
                    // This one and every older one have expired.
                    dead.push(conn);
                    dead.extend(state.idle.drain(..));
                    break;
                }
                // Always asked, however short the idle time: bytes a server sent unasked
                // (a second response) must never be read as the next one's answer.
                if conn.still_usable() {
                    found = Some(conn);
                    break;
                }
                dead.push(conn);
            }
            found
        };
        self.close_all(dead);
        found
    }

    pub(crate) fn put_back(&self, mut conn: Box<Conn>) {
        if self.config.max_idle_per_origin == 0 {
            return;
        }
        let now = Instant::now();
        conn.idle_since = now;
        let expiry = self.config.pool_idle_expiry;
        let mut dropped = Vec::new();
        {
            let mut origins = self.origins.borrow_mut();
            // The origin's state exists while any of its connections does (its slot).
            let state = match origins.get_mut(&conn.origin) {
                Some(state) => state,
                None => origins.entry(conn.origin.clone()).or_default(),
            };
            while state
                .idle
                .front()
                .is_some_and(|c| now.saturating_duration_since(c.idle_since) > expiry)
            {
                dropped.extend(state.idle.pop_front());
            }
            if state.idle.len() >= self.config.max_idle_per_origin {
                // Drop the oldest.
                dropped.extend(state.idle.pop_front());
            }
            state.idle.push_back(conn);
            wake_one(state);
        }
        self.close_all(dropped);
    }

    async fn connect(&self, origin: &Origin, slot: Slot) -> Result<Box<Conn>, NetError> {
        let tls_config = if origin.tls {
            let policy = self
                .tls_policies
                .borrow()
                .get(origin)
                .copied()
                .unwrap_or_default();
            Some(client_config(policy).map_err(|detail| NetError::Tls {
                origin: origin.clone(),
                detail,
            })?)
        } else {
            None
        };
        let mut conn = Conn::connect(origin, tls_config, self.config.connect_timeout).await?;
        conn.slot = Some(slot);
        self.connections_opened
            .set(self.connections_opened.get() + 1);
        Ok(conn)
    }

    /// A pooled connection if there is one (`true` = reused), else a new one; at the
    /// origin's cap, waits in line for either.
    pub(crate) async fn checkout(
        &self,
        origin: &Origin,
        fresh: bool,
    ) -> Result<(Box<Conn>, bool), NetError> {
        let cap = self.config.max_conns_per_origin;
        let mut my_turn = false;
        loop {
            if !fresh || my_turn {
                if let Some(conn) = self.take_pooled(origin) {
                    self.pass_turn(origin, my_turn);
                    return Ok((conn, true));
                }
            }
            let waiter = {
                let mut origins = self.origins.borrow_mut();
                let state = origins.entry(origin.clone()).or_default();
                let queue_free = my_turn || state.waiters.iter().all(|w| w.is_canceled());
                if cap == 0 || (state.open < cap && queue_free) {
                    state.open += 1;
                    None
                } else if fresh && !state.idle.is_empty() && queue_free {
                    // A fresh connection is wanted and an idle one holds the slot: close it.
                    let idle = state.idle.pop_front();
                    drop(origins);
                    self.close_all(idle);
                    continue;
                } else {
                    let (tx, rx) = oneshot::channel();
                    if my_turn {
                        // Woken, but someone else got there first: keep our place in line.
                        state.waiters.push_front(tx);
                    } else {
                        state.waiters.push_back(tx);
                    }
                    Some(rx)
                }
            };
            match waiter {
                None => {
                    self.pass_turn(origin, my_turn);
                    let slot = Slot {
                        origin: origin.clone(),
                        inner: self.me.clone(),
                    };
                    return Ok((self.connect(origin, slot).await?, false));
                }
                Some(rx) => {
                    // The sender lives in the map, which lives as long as `self`.
                    let _ = rx.await;
                    my_turn = true;
                }
            }
        }
    }

    /// A waiter that was woken but found its way without using the wake-up for itself
    /// (or while others still wait) passes the turn on, so nobody is stranded.
    fn pass_turn(&self, origin: &Origin, my_turn: bool) {
        if my_turn {
            if let Some(state) = self.origins.borrow_mut().get_mut(origin) {
                if state.open < self.config.max_conns_per_origin || !state.idle.is_empty() {
                    wake_one(state);
                }
            }
        }
    }
}

fn wake_one(state: &mut OriginState) {
    while let Some(waiter) = state.waiters.pop_front() {
        if waiter.send(()).is_ok() {
            return;
        }
    }
}
