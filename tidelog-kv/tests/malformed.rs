//! A node answers a malformed or oversized request with an error and goes
//! on serving: the same connection after a frame that does not decode, a
//! new one after a frame too long to trust.

mod common;

use tidelog_kv::api::{ClientReq, ClientResp, Request, Response};
use tidelog_kv::procs::Proc;
use tidelog_kv::wire::{self, Conn, FRAME_MAX};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn status_on(conn: &mut Conn) -> ClientResp {
    match conn.call::<_, Response<()>>(&Request::<()>::Client(ClientReq::Status)).await.expect("status") {
        Response::Client(r) => r,
        other => panic!("status answered {other:?}"),
    }
}

#[test]
fn malformed_and_oversized_requests_get_errors_and_the_node_serves_on() {
    common::run(120, "the malformed-request test", async {
        let dir = tempfile::tempdir().expect("tempdir");
        let node = Proc::start(common::exe(), 1, dir.path(), "127.0.0.1:0", &[]).await.expect("start a node");
        let mut conn = Conn::connect(&node.addr).await.expect("connect");

        // Garbage in a well-formed frame: an error, and the connection lives.
        for garbage in [vec![0xff; 3], vec![7; 100], b"GET / HTTP/1.1\r\n\r\n".to_vec(), Vec::new()] {
            match conn.call_raw::<Response<()>>(garbage.clone()).await.expect("an answer to garbage") {
                Response::Refused(why) => assert!(why.contains("malformed"), "{why}"),
                other => panic!("{garbage:?} was answered {other:?}"),
            }
        }
        // A valid request of another shape: a Raft RPC of nonsense.
        let bogus = wire::encode(&Request::<u64>::Raft(42)).expect("encode");
        assert!(matches!(conn.call_raw::<Response<()>>(bogus).await, Ok(Response::Refused(_))));
        assert!(matches!(status_on(&mut conn).await, ClientResp::Status(s) if s.id == 1), "the same connection serves");

        // A length prefix beyond the limit: an error, then the node closes.
        let mut raw = tokio::net::TcpStream::connect(&node.addr).await.expect("connect");
        raw.write_all(&((FRAME_MAX as u32) + 1).to_be_bytes()).await.expect("send the header");
        let mut len = [0u8; 4];
        raw.read_exact(&mut len).await.expect("an answer to the oversized frame");
        let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
        raw.read_exact(&mut body).await.expect("the answer's body");
        match wire::decode::<Response<()>>(&body).expect("decode") {
            Response::Refused(why) => assert!(why.contains("oversized"), "{why}"),
            other => panic!("the oversized frame was answered {other:?}"),
        }
        assert_eq!(raw.read(&mut len).await.expect("read"), 0, "the connection is closed after an oversized frame");

        // The node still serves, old connections and new.
        assert!(matches!(status_on(&mut conn).await, ClientResp::Status(_)));
        let mut fresh = Conn::connect(&node.addr).await.expect("connect again");
        assert!(matches!(status_on(&mut fresh).await, ClientResp::Status(_)));
        node.kill().await.expect("kill the node");
    });
}
