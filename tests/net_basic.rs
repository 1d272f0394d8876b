//! Basic client behaviour on both drivers: GET/PUT with Content-Length and chunked bodies,
//! body reads into the caller's buffer, keep-alive reuse.

mod net_support;

use bytes::Bytes;
use keepmover::net::{HttpClient, Method, Request};
use net_support::{ok_response, serve_each, test_config};

on_both_backends! {
    get_content_length_body => |_| async {
        let server = serve_each(|req| {
            assert!(req.request_line().starts_with("GET /blob?x=1 HTTP/1.1"));
            assert!(req.head.contains("\r\nHost: 127.0.0.1:"));
            assert!(req.head.contains("\r\nX-Test: yes\r\n"));
            ok_response(b"hello world")
        });
        let client = HttpClient::new(test_config());
        let req = Request::new(Method::Get, server.origin.clone(), "/blob?x=1").header("X-Test", "yes");
        let mut resp = client.send(req).await.unwrap();
        assert_eq!(resp.status, 200);
        assert_eq!(resp.content_length(), Some(11));
        assert_eq!(resp.header("CONTENT-length"), Some("11"));
        let mut buf = Vec::with_capacity(64);
        buf.extend_from_slice(b">>");
        loop {
            let compio::BufResult(n, b) = resp.read_body_chunk(buf).await;
            buf = b;
            if n.unwrap() == 0 { break; }
        }
        assert_eq!(buf, b">>hello world");
    };

    put_body_and_keep_alive_reuse => |_| async {
        let server = serve_each(|req| {
            assert!(req.request_line().starts_with("PUT /abc HTTP/1.1"));
            ok_response(format!("stored {}", req.body.len()).as_bytes())
        });
        let client = HttpClient::new(test_config());
        for size in [0usize, 5, 100_000, 3 << 20] {
            let body = Bytes::from(vec![7u8; size]);
            let req = Request::new(Method::Put, server.origin.clone(), "/abc").body(body);
            let resp = client.send(req).await.unwrap();
            assert_eq!(resp.status, 200);
            let text = resp.read_to_end(1024).await.unwrap();
            assert_eq!(text, format!("stored {size}").as_bytes());
        }
        assert_eq!(server.accepts(), 1, "one keep-alive connection for all requests");
        assert_eq!(client.connections_opened(), 1);
    };

    chunked_body => |_| async {
        let server = serve_each(|_| {
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n1;ext=1\r\n \r\n5\r\nworld\r\n0\r\n\r\n".to_vec()
        });
        let client = HttpClient::new(test_config());
        for _ in 0..3 {
            let resp = client.send(Request::new(Method::Get, server.origin.clone(), "/index")).await.unwrap();
            assert_eq!(resp.read_to_end(1 << 20).await.unwrap(), b"hello world");
        }
        assert_eq!(server.accepts(), 1);
    };

    large_body_lands_in_caller_buffer => |_| async {
        let payload: Vec<u8> = (0..(8u32 << 20)).map(|i| (i % 251) as u8).collect();
        let expected = payload.clone();
        let server = serve_each(move |_| ok_response(&payload));
        let client = HttpClient::new(test_config());
        let mut resp = client.send(Request::new(Method::Get, server.origin.clone(), "/big")).await.unwrap();
        let mut buf = Vec::with_capacity(8 << 20);
        let mut reads = 0;
        loop {
            let compio::BufResult(n, b) = resp.read_body_chunk(buf).await;
            buf = b;
            reads += 1;
            if n.unwrap() == 0 { break; }
        }
        assert!(buf == expected);
        assert!(resp.is_complete());
        assert!(reads >= 2);
        assert_eq!(client.idle_connections(&server.origin), 1);
    };

    head_and_204_have_no_body => |_| async {
        let server = serve_each(|req| {
            if req.request_line().starts_with("HEAD") {
                b"HTTP/1.1 200 OK\r\nContent-Length: 12345\r\n\r\n".to_vec()
            } else {
                b"HTTP/1.1 204 No Content\r\n\r\n".to_vec()
            }
        });
        let client = HttpClient::new(test_config());
        for _ in 0..2 {
            let resp = client.send(Request::new(Method::Head, server.origin.clone(), "/x")).await.unwrap();
            assert_eq!(resp.content_length(), Some(12345));
            assert!(resp.is_complete());
            assert_eq!(resp.read_to_end(10).await.unwrap(), b"");
            let resp = client.send(Request::new(Method::Delete, server.origin.clone(), "/x")).await.unwrap();
            assert_eq!(resp.status, 204);
            resp.discard().await.unwrap();
        }
        assert_eq!(server.accepts(), 1);
    };
}
