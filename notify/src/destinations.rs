//! Where webhooks may send: anywhere, or only into listed networks
//! (`OTA_WEBHOOK_ALLOWED_NETWORKS`), for deployments whose server must not
//! reach beyond an integration subnet. With a list, a receiver is named by
//! its address (or `localhost`), so no name lookup decides where fleet events
//! go, and the check is made when a subscription is created and again before
//! every attempt.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use ipnet::IpNet;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Destinations {
    /// Any host.
    #[default]
    Anywhere,
    /// Only addresses in these networks.
    Within(Vec<IpNet>),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("OTA_WEBHOOK_ALLOWED_NETWORKS: {0:?} is not a network such as 10.20.0.0/16 or ::1/128")]
pub struct BadNetwork(pub String);

impl FromStr for Destinations {
    type Err = BadNetwork;
    /// A comma-separated list of networks; empty means anywhere.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let nets = s
            .split(',')
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .map(|n| n.parse::<IpNet>().map_err(|_| BadNetwork(n.to_owned())))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(if nets.is_empty() { Destinations::Anywhere } else { Destinations::Within(nets) })
    }
}

impl Destinations {
    /// Why a receiver at `url` may not be sent to, if it may not.
    pub fn refuse(&self, url: &url::Url) -> Option<String> {
        let Destinations::Within(nets) = self else { return None };
        let addresses: Vec<IpAddr> = match url.host() {
            Some(url::Host::Ipv4(ip)) => vec![IpAddr::V4(ip)],
            Some(url::Host::Ipv6(ip)) => vec![IpAddr::V6(ip)],
            Some(url::Host::Domain(name)) if name.eq_ignore_ascii_case("localhost") => {
                vec![IpAddr::V4(Ipv4Addr::LOCALHOST), IpAddr::V6(Ipv6Addr::LOCALHOST)]
            }
            _ => {
                return Some(
                    "the server only sends into OTA_WEBHOOK_ALLOWED_NETWORKS: name the receiver by its address".into(),
                )
            }
        };
        let allowed = addresses.iter().any(|ip| nets.iter().any(|net| net.contains(ip)));
        (!allowed).then(|| format!("{} is outside OTA_WEBHOOK_ALLOWED_NETWORKS", addresses[0]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> url::Url {
        url::Url::parse(s).expect("test urls parse")
    }

    #[test]
    fn without_a_list_anything_goes_and_with_one_only_addresses_inside_it() {
        assert_eq!("".parse(), Ok(Destinations::Anywhere));
        assert_eq!(Destinations::Anywhere.refuse(&url("https://hooks.example.com/x")), None);
        let only: Destinations = "127.0.0.0/8, ::1/128".parse().expect("valid");
        assert_eq!(only.refuse(&url("http://127.0.0.1:9000/hook")), None);
        assert_eq!(only.refuse(&url("http://[::1]:9000/hook")), None);
        assert_eq!(only.refuse(&url("http://localhost:9000/hook")), None);
        assert!(only.refuse(&url("http://10.0.0.1/hook")).is_some_and(|m| m.contains("10.0.0.1")));
        assert!(only.refuse(&url("https://hooks.example.com/x")).is_some_and(|m| m.contains("by its address")));
        assert_eq!("10.0.0.0/8,nonsense".parse::<Destinations>(), Err(BadNetwork("nonsense".into())));
    }
}
