//! Index slices: fetch, parse, sort, merge and diff, one hash prefix at a time.
