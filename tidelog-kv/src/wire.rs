//! The wire: length-delimited frames (tokio-util's `LengthDelimitedCodec`,
//! a 4-byte big-endian length) each carrying one bincode-encoded message,
//! one request then one response at a time on a connection. Nothing here
//! is home-made beyond choosing those two crates' options.
//!
//! A frame that does not decode gets an error response and the connection
//! goes on (the framing is intact); a frame longer than [`FRAME_MAX`] gets
//! an error response and the connection is closed (its length prefix
//! cannot be trusted to find the next frame). Either way the server goes
//! on serving everyone else.

use std::future::Future;
use std::io;
use std::sync::Mutex;

use bincode::Options;
use futures::{SinkExt, StreamExt};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::bytes::Bytes;
use tokio_util::codec::{Framed, LengthDelimitedCodec};

/// The largest frame accepted: bounds what one request can make a node
/// allocate. Raft's AppendEntries batches and snapshots stay far below.
pub const FRAME_MAX: usize = 32 << 20;

/// Idle connections kept per peer at most.
const IDLE_MAX: usize = 64;

fn codec() -> LengthDelimitedCodec {
    LengthDelimitedCodec::builder().max_frame_length(FRAME_MAX).new_codec()
}

/// bincode with fixed-width little-endian integers and a size limit: a
/// length inside a frame cannot make the decoder allocate beyond it.
fn options() -> impl bincode::Options {
    bincode::DefaultOptions::new().with_fixint_encoding().with_limit(FRAME_MAX as u64)
}

/// Encodes one message.
pub fn encode<T: Serialize>(msg: &T) -> io::Result<Vec<u8>> {
    options().serialize(msg).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// Decodes one message.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> io::Result<T> {
    options().deserialize(bytes).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// Why a request got no answer from the handler.
#[derive(Debug)]
pub enum Refused {
    /// The frame did not decode as a request.
    Malformed(String),
    /// The frame was longer than [`FRAME_MAX`].
    Oversized(String),
}

/// Serves `listener` forever: one task per connection, `handle` per request.
pub async fn serve<Req, Resp, H, Fut>(listener: TcpListener, handle: H)
where
    Req: DeserializeOwned + Send + 'static,
    Resp: Serialize + From<Refused> + Send + 'static,
    H: Fn(Req) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Resp> + Send + 'static,
{
    loop {
        let sock = match listener.accept().await {
            Ok((sock, _)) => sock,
            Err(e) => {
                // EMFILE and the like pass; the listener stays.
                tracing::warn!("accept: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = sock.set_nodelay(true);
        tokio::spawn(connection(sock, handle.clone()));
    }
}

async fn connection<Req, Resp, H, Fut>(sock: TcpStream, handle: H)
where
    Req: DeserializeOwned,
    Resp: Serialize + From<Refused>,
    H: Fn(Req) -> Fut,
    Fut: Future<Output = Resp>,
{
    let mut framed = Framed::new(sock, codec());
    while let Some(frame) = framed.next().await {
        let (resp, close) = match frame {
            Ok(bytes) => match decode::<Req>(&bytes) {
                Ok(req) => (handle(req).await, false),
                Err(e) => (Resp::from(Refused::Malformed(e.to_string())), false),
            },
            Err(e) if e.kind() == io::ErrorKind::InvalidData => (Resp::from(Refused::Oversized(e.to_string())), true),
            Err(_) => return,
        };
        let Ok(bytes) = encode(&resp) else { return };
        if framed.send(Bytes::from(bytes)).await.is_err() || close {
            return;
        }
    }
}

/// One client connection: a request, then its response.
#[derive(Debug)]
pub struct Conn {
    framed: Framed<TcpStream, LengthDelimitedCodec>,
}

impl Conn {
    /// Connects to `addr`.
    pub async fn connect(addr: &str) -> io::Result<Conn> {
        let sock = TcpStream::connect(addr).await?;
        sock.set_nodelay(true)?;
        Ok(Conn { framed: Framed::new(sock, codec()) })
    }

    /// Sends `req` and awaits its response.
    pub async fn call<Req: Serialize, Resp: DeserializeOwned>(&mut self, req: &Req) -> io::Result<Resp> {
        self.framed.send(Bytes::from(encode(req)?)).await?;
        match self.framed.next().await {
            Some(frame) => decode(&frame?),
            None => Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the peer closed the connection")),
        }
    }

    /// Sends raw bytes as one frame (for tests of malformed requests).
    pub async fn call_raw<Resp: DeserializeOwned>(&mut self, bytes: Vec<u8>) -> io::Result<Resp> {
        self.framed.send(Bytes::from(bytes)).await?;
        match self.framed.next().await {
            Some(frame) => decode(&frame?),
            None => Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the peer closed the connection")),
        }
    }
}

/// Connections to one address, reused: a call takes an idle one (or
/// connects), and gives it back only if the call succeeded.
#[derive(Debug)]
pub struct Pool {
    addr: String,
    idle: Mutex<Vec<Conn>>,
}

impl Pool {
    /// A pool of connections to `addr` (none opened yet).
    pub fn new(addr: String) -> Pool {
        Pool { addr, idle: Mutex::new(Vec::new()) }
    }

    /// The address.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// One call on a pooled connection.
    pub async fn call<Req: Serialize, Resp: DeserializeOwned>(&self, req: &Req) -> io::Result<Resp> {
        let idle = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let mut conn = match idle {
            Some(c) => c,
            None => Conn::connect(&self.addr).await?,
        };
        let resp = conn.call(req).await?;
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < IDLE_MAX {
            idle.push(conn);
        }
        Ok(resp)
    }
}
