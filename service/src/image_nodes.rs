//! Image servers with no agent (`--image-node KIND=URL`, `HERD_IMAGE_NODES`): herd polls each
//! one's model list on the heartbeat cadence and reports it to the router as a server of that
//! kind on a machine named by the URL's host and port; a server that does not answer is reported
//! down, with the models it last listed.

use crate::driver::{DriverTx, Input};
use crate::static_nodes::{get_json, POLL_EVERY};
use crate::upstream::Upstream;
use crate::Runtime;
use herd_core::image::backend::{models_of, ImageBackendKind};
use herd_core::image::sched::BackendInfo;
use herd_core::url::BaseUrl;
use std::sync::Arc;

/// One `--image-node`.
#[derive(Clone, Debug)]
pub struct ImageNode {
    /// Which server.
    pub kind: ImageBackendKind,
    /// Where.
    pub url: BaseUrl,
}

impl ImageNode {
    /// The machine's name: the URL's host and port.
    pub fn name(&self) -> String {
        self.url.authority().to_string()
    }
}

/// Reads `KIND=URL` (`http://` and the kind's usual port added when missing).
///
/// # Errors
/// No `=`, an unknown kind, or an unusable address, said with the value.
pub fn parse_image_node(raw: &str) -> Result<ImageNode, String> {
    let kinds = ImageBackendKind::ALL.map(ImageBackendKind::as_str).join(", ");
    let (kind, url) =
        raw.split_once('=').ok_or_else(|| format!("--image-node {raw:?}: write KIND=URL, KIND one of {kinds}"))?;
    let kind = ImageBackendKind::parse(kind)
        .ok_or_else(|| format!("--image-node {raw:?}: unknown kind {kind:?}, not one of {kinds}"))?;
    let url = BaseUrl::parse(url.trim(), kind.default_port()).map_err(|e| format!("--image-node {raw:?}: {e}"))?;
    Ok(ImageNode { kind, url })
}

/// Polls one image server forever, reporting each round to the driver.
pub async fn poll(driver: DriverTx, client: Arc<dyn Upstream>, rt: Arc<dyn Runtime>, node: ImageNode) {
    let name = node.name();
    let mut last: Vec<String> = Vec::new();
    loop {
        let started = rt.now();
        let listed = get_json(&*client, &*rt, &node.url, node.kind.models_path(), &[])
            .await
            .and_then(|v| models_of(node.kind, &v).ok());
        let up = listed.is_some();
        if let Some(models) = listed {
            last = models;
        }
        let models: Vec<&str> = last.iter().map(String::as_str).collect();
        let mut info = BackendInfo::new(&name, node.kind, &models);
        info.up = up;
        driver.send(Input::ImageServers(name.clone(), vec![info])).await;
        rt.sleep(POLL_EVERY.saturating_sub(rt.now().saturating_since(started))).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_node_values() {
        let n = parse_image_node("a1111=192.168.1.5").unwrap();
        assert_eq!(
            (n.kind, n.url.as_str(), n.name()),
            (ImageBackendKind::A1111, "http://192.168.1.5:7860", "192.168.1.5:7860".to_string())
        );
        let n = parse_image_node("comfyui=http://box:9000/").unwrap();
        assert_eq!((n.kind, n.url.as_str()), (ImageBackendKind::ComfyUi, "http://box:9000"));
        assert!(parse_image_node("http://box").unwrap_err().contains("KIND=URL"));
        assert!(parse_image_node("dalle=http://box").unwrap_err().contains("unknown kind"));
        assert!(parse_image_node("sdcpp=ftp://box").is_err());
    }
}
