//! Pipelining on both drivers against a Go-like server (reads pipelined requests, answers
//! them strictly one after another on each connection): order is kept, one connection is
//! used, and a server that closes part way gets the unanswered requests on a new connection.

mod net_support;

use std::io::Write;

use keepmover::net::{HttpClient, Method, NetError, Origin, Request};
use net_support::{ok_response, read_request, serve, test_config};

on_both_backends! {
    pipelined_responses_come_back_in_order => |_| async {
        let server = serve(|_, mut stream| {
            while let Some(req) = read_request(&mut stream) {
                let path = req.request_line().split(' ').nth(1).unwrap().to_string();
                if stream.write_all(&ok_response(path.as_bytes())).is_err() { return; }
            }
        });
        let client = HttpClient::new(test_config());
        for round in 0..2 {
            let reqs: Vec<Request> = (0..50)
                .map(|i| Request::new(Method::Get, server.origin.clone(), format!("/r{round}/{i}")))
                .collect();
            let results = client.send_pipelined(reqs, 1024).await;
            assert_eq!(results.len(), 50);
            for (i, result) in results.into_iter().enumerate() {
                let resp = result.unwrap();
                assert_eq!(resp.status, 200);
                assert_eq!(resp.body, format!("/r{round}/{i}").as_bytes());
            }
        }
        assert_eq!(server.accepts(), 1);
    };

    server_closing_part_way_gets_a_second_connection => |_| async {
        // Each connection answers 3 requests, the third with Connection: close.
        let server = serve(|_, mut stream| {
            for n in 0..3 {
                let Some(req) = read_request(&mut stream) else { return };
                let path = req.request_line().split(' ').nth(1).unwrap().to_string();
                let resp = if n == 2 {
                    format!("HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{path}", path.len())
                } else {
                    format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{path}", path.len())
                };
                stream.write_all(resp.as_bytes()).unwrap();
            }
        });
        let client = HttpClient::new(test_config());
        let reqs: Vec<Request> = (0..5)
            .map(|i| Request::new(Method::Get, server.origin.clone(), format!("/{i}")))
            .collect();
        let results = client.send_pipelined(reqs, 1024).await;
        for (i, result) in results.into_iter().enumerate() {
            assert_eq!(result.unwrap().body, format!("/{i}").as_bytes());
        }
        assert_eq!(server.accepts(), 2);
    };

    mixed_origins_and_oversized_bodies => |_| async {
        let server = serve(|_, mut stream| {
            while let Some(req) = read_request(&mut stream) {
                let body = if req.request_line().contains("/big") { vec![b'x'; 5000] } else { b"ok".to_vec() };
                if stream.write_all(&ok_response(&body)).is_err() { return; }
            }
        });
        let other = Origin::parse("http://127.0.0.1:1").unwrap();
        let client = HttpClient::new(test_config());
        let reqs = vec![
            Request::new(Method::Get, server.origin.clone(), "/a"),
            Request::new(Method::Get, other, "/b"),
            Request::new(Method::Get, server.origin.clone(), "/big"),
            Request::new(Method::Get, server.origin.clone(), "/c"),
        ];
        let results = client.send_pipelined(reqs, 1000).await;
        assert_eq!(results[0].as_ref().unwrap().body, b"ok");
        assert!(matches!(results[1], Err(NetError::InvalidRequest { .. })));
        assert!(matches!(results[2], Err(NetError::BodyTooLong { .. })));
        // The connection was abandoned mid-body; the follower failed with it.
        assert!(results[3].is_err());
    };
}
