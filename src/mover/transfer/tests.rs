//! Tests of the transfer rules over the in-memory keepstores.
