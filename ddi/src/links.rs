//! Every URL the server hands a device, built in one place so the DDI answers and
//! the NATS push channel agree byte for byte.

use crate::signed_url::UrlSigner;

/// Characters kept as they are in a path segment (RFC 3986 unreserved).
fn encode_segment(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    for byte in raw.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => out.push(byte as char),
            other => out.push_str(&format!("%{other:02X}")),
        }
    }
    out
}

/// Builds DDI URLs under a public base (`https://ota.example.com`, no trailing slash).
#[derive(Debug, Clone)]
pub struct Links {
    base: String,
}

impl Links {
    pub fn new(public_url: &str) -> Self {
        Self { base: public_url.trim_end_matches('/').to_owned() }
    }

    /// `{base}/{tenant}/controller/v1/{controllerId}`.
    pub fn controller(&self, tenant: &str, device: &str) -> String {
        format!("{}{}", self.base, controller_path(tenant, device))
    }

    pub fn deployment_base(&self, tenant: &str, device: &str, action: u32, change: &str) -> String {
        format!("{}/deploymentBase/{action}?c={change}", self.controller(tenant, device))
    }

    pub fn cancel_action(&self, tenant: &str, device: &str, action: u32) -> String {
        format!("{}/cancelAction/{action}", self.controller(tenant, device))
    }

    pub fn installed_base(&self, tenant: &str, device: &str, action: u32) -> String {
        format!("{}/installedBase/{action}", self.controller(tenant, device))
    }

    pub fn config_data(&self, tenant: &str, device: &str) -> String {
        format!("{}/configData", self.controller(tenant, device))
    }

    pub fn artifact(&self, tenant: &str, device: &str, module: &str, filename: &str) -> String {
        format!("{}{}", self.base, artifact_path(tenant, device, module, filename))
    }

    /// The artifact URL with an expiring signature: fetchable without a token.
    pub fn signed_artifact(
        &self,
        signer: &UrlSigner,
        tenant: &str,
        device: &str,
        module: &str,
        filename: &str,
        expires: i64,
    ) -> String {
        let path = artifact_path(tenant, device, module, filename);
        format!("{}{path}?{}", self.base, signer.query(&signed_form(tenant, device, module, filename), expires))
    }
}

pub fn controller_path(tenant: &str, device: &str) -> String {
    format!("/{}/controller/v1/{}", encode_segment(tenant), encode_segment(device))
}

pub fn artifact_path(tenant: &str, device: &str, module: &str, filename: &str) -> String {
    format!(
        "{}/softwaremodules/{}/artifacts/{}",
        controller_path(tenant, device),
        encode_segment(module),
        encode_segment(filename)
    )
}

/// What a download signature covers: the decoded path parts, tenant case-folded, so
/// that percent-encoding differences between clients never break a valid link.
pub fn signed_form(tenant: &str, device: &str, module: &str, filename: &str) -> String {
    format!("{}\n{device}\n{module}\n{filename}", tenant.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_follow_hawkbits_layout_and_encode_segments() {
        let links = Links::new("http://127.0.0.1:8080/");
        assert_eq!(links.controller("default", "dev-1"), "http://127.0.0.1:8080/default/controller/v1/dev-1");
        assert_eq!(
            links.deployment_base("DEFAULT", "dev 1", 3, "-12"),
            "http://127.0.0.1:8080/DEFAULT/controller/v1/dev%201/deploymentBase/3?c=-12"
        );
        assert_eq!(
            links.artifact("default", "d", "m", "image v1.swu"),
            "http://127.0.0.1:8080/default/controller/v1/d/softwaremodules/m/artifacts/image%20v1.swu"
        );
    }

    #[test]
    fn a_signed_link_carries_a_signature_over_its_parts() {
        let signer = UrlSigner::new(b"s".repeat(32));
        let url = Links::new("http://h").signed_artifact(&signer, "default", "d", "m", "f.swu", 100);
        let query = url.split_once('?').map(|(_, q)| q).unwrap_or_default();
        let signature = query.split("signature=").nth(1).unwrap_or_default();
        assert_eq!(signer.verify(&signed_form("DEFAULT", "d", "m", "f.swu"), 100, signature, 50), Ok(()));
    }
}
