//! The Windows CRI listener (a named pipe) is not built yet; crimux refuses to start there
//! with a clear message rather than half-working.

use std::future::Future;

use anyhow::bail;
use crimux_cri::CriServer;

pub struct CriListener {
    _private: (),
}

impl CriListener {
    pub fn bind(listen: &str) -> anyhow::Result<CriListener> {
        bail!("cannot listen on {listen}: named pipe listener not yet built")
    }

    pub async fn serve(
        self,
        _server: CriServer,
        _shutdown: impl Future<Output = ()>,
    ) -> anyhow::Result<()> {
        bail!("named pipe listener not yet built")
    }
}
