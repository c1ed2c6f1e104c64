//! The outcome of attaching a pod to the network: the interfaces and addresses the plugins
//! report, read from any CNI result version (0.1.0 through 1.0.0), plus the raw JSON.

use std::net::IpAddr;

use crimux_core::{Error, Result};
use serde_json::Value;

/// One interface a plugin created or configured.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Interface {
    pub name: String,
    pub mac: String,
    /// The netns path for interfaces inside the pod; empty for host-side ones.
    pub sandbox: String,
}

/// One address assigned to the pod.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IpConfig {
    pub address: IpAddr,
    pub prefix_len: u8,
    pub gateway: Option<IpAddr>,
    /// Index into [`AttachResult::interfaces`], when the plugin says which one.
    pub interface: Option<usize>,
}

/// What the last plugin of the list returned for an ADD.
#[derive(Clone, Debug, PartialEq)]
pub struct AttachResult {
    pub cni_version: String,
    pub interfaces: Vec<Interface>,
    pub ips: Vec<IpConfig>,
    /// The pod-side interface name the ADD used (`eth0`).
    pub ifname: String,
    /// The result exactly as the plugin printed it (cached and passed as `prevResult`).
    pub raw: Value,
}

impl AttachResult {
    /// Reads a plugin's result. `ifname` is the pod-side interface the ADD asked for.
    pub fn parse(raw: Value, ifname: &str) -> Result<Self> {
        let bad = |what: &str| Error::Internal(format!("CNI result: {what}"));
        let obj = raw.as_object().ok_or_else(|| bad("not a JSON object"))?;
        let cni_version = obj
            .get("cniVersion")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let mut interfaces = Vec::new();
        for iface in obj
            .get("interfaces")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let field = |k: &str| {
                iface
                    .get(k)
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string()
            };
            interfaces.push(Interface {
                name: field("name"),
                mac: field("mac"),
                sandbox: field("sandbox"),
            });
        }
        let mut ips = Vec::new();
        for ip in obj
            .get("ips")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let address = ip
                .get("address")
                .and_then(Value::as_str)
                .ok_or_else(|| bad("an ips entry without \"address\""))?;
            let interface = ip
                .get("interface")
                .and_then(Value::as_u64)
                .map(|i| i as usize)
                .filter(|i| *i < interfaces.len());
            ips.push(parse_ip_config(address, ip.get("gateway"), interface)?);
        }
        // CNI 0.1.0/0.2.0 results: {"ip4": {"ip": "a/b", "gateway": ..}, "ip6": {..}}.
        for key in ["ip4", "ip6"] {
            if let Some(legacy) = obj.get(key) {
                let address = legacy
                    .get("ip")
                    .and_then(Value::as_str)
                    .ok_or_else(|| bad("an ip4/ip6 entry without \"ip\""))?;
                ips.push(parse_ip_config(address, legacy.get("gateway"), None)?);
            }
        }
        Ok(AttachResult {
            cni_version,
            interfaces,
            ips,
            ifname: ifname.to_string(),
            raw,
        })
    }

    /// The pod's addresses, IPv4 first (containerd's default preference), each family in
    /// the plugin's order. These are the addresses on the pod-side `ifname` inside the netns;
    /// when the plugin does not say which interface an address belongs to (old result
    /// versions), every address counts.
    pub fn pod_ips(&self) -> Vec<IpAddr> {
        let on_pod_iface = |ip: &&IpConfig| match ip.interface {
            Some(i) => {
                let iface = &self.interfaces[i];
                iface.name == self.ifname && !iface.sandbox.is_empty()
            }
            None => true,
        };
        let mut v4: Vec<IpAddr> = Vec::new();
        let mut v6: Vec<IpAddr> = Vec::new();
        for ip in self.ips.iter().filter(on_pod_iface) {
            if ip.address.is_ipv4() {
                v4.push(ip.address);
            } else {
                v6.push(ip.address);
            }
        }
        v4.extend(v6);
        v4
    }

    /// The pod's primary IP (what `PodSandboxStatus.network.ip` reports).
    pub fn primary_ip(&self) -> Option<IpAddr> {
        self.pod_ips().into_iter().next()
    }
}

/// `"10.1.2.3/24"` plus an optional gateway.
fn parse_ip_config(
    address: &str,
    gateway: Option<&Value>,
    interface: Option<usize>,
) -> Result<IpConfig> {
    let bad = || Error::Internal(format!("CNI result: bad address {address:?}"));
    let (ip, prefix) = address.split_once('/').ok_or_else(bad)?;
    let address: IpAddr = ip.parse().map_err(|_| bad())?;
    let prefix_len: u8 = prefix.parse().map_err(|_| bad())?;
    let max = if address.is_ipv4() { 32 } else { 128 };
    if prefix_len > max {
        return Err(bad());
    }
    let gateway = match gateway.and_then(Value::as_str) {
        Some(g) if !g.is_empty() => Some(
            g.parse()
                .map_err(|_| Error::Internal(format!("CNI result: bad gateway {g:?}")))?,
        ),
        _ => None,
    };
    Ok(IpConfig {
        address,
        prefix_len,
        gateway,
        interface,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_a_1_0_0_result() {
        let raw = json!({
            "cniVersion": "1.0.0",
            "interfaces": [
                {"name": "cni0", "mac": "aa:aa:aa:aa:aa:aa"},
                {"name": "veth1", "mac": "bb:bb:bb:bb:bb:bb"},
                {"name": "eth0", "mac": "cc:cc:cc:cc:cc:cc", "sandbox": "/run/netns/x"},
            ],
            "ips": [
                {"address": "fd00::5/64", "interface": 2},
                {"address": "10.0.0.1/24", "interface": 0},
                {"address": "10.0.0.5/24", "gateway": "10.0.0.1", "interface": 2},
            ],
        });
        let r = AttachResult::parse(raw.clone(), "eth0").unwrap();
        assert_eq!(r.interfaces.len(), 3);
        assert_eq!(r.interfaces[2].sandbox, "/run/netns/x");
        assert_eq!(r.ips[2].gateway, Some("10.0.0.1".parse().unwrap()));
        assert_eq!(r.ips[2].prefix_len, 24);
        let want: Vec<IpAddr> = vec!["10.0.0.5".parse().unwrap(), "fd00::5".parse().unwrap()];
        assert_eq!(r.pod_ips(), want);
        assert_eq!(r.primary_ip(), Some(want[0]));
        assert_eq!(r.raw, raw);
    }

    #[test]
    fn reads_0_4_0_and_0_2_0_results() {
        let v040 = json!({
            "cniVersion": "0.4.0",
            "interfaces": [{"name": "eth0", "sandbox": "/n"}],
            "ips": [{"version": "4", "address": "10.1.0.7/16", "interface": 0}],
        });
        let r = AttachResult::parse(v040, "eth0").unwrap();
        assert_eq!(r.primary_ip(), Some("10.1.0.7".parse().unwrap()));

        let v020 = json!({
            "cniVersion": "0.2.0",
            "ip4": {"ip": "10.2.0.9/24", "gateway": "10.2.0.1"},
            "ip6": {"ip": "fd01::9/64"},
        });
        let r = AttachResult::parse(v020, "eth0").unwrap();
        assert_eq!(r.pod_ips().len(), 2);
        assert_eq!(r.primary_ip(), Some("10.2.0.9".parse().unwrap()));
    }

    #[test]
    fn bad_results_are_errors_not_panics() {
        for raw in [
            json!([]),
            json!({"ips": [{"address": "10.0.0.1"}]}),
            json!({"ips": [{"address": "10.0.0.1/33"}]}),
            json!({"ips": [{"address": "nope/24"}]}),
            json!({"ips": [{"gateway": "10.0.0.1"}]}),
            json!({"ips": [{"address": "10.0.0.1/24", "gateway": "x"}]}),
        ] {
            assert!(AttachResult::parse(raw.clone(), "eth0").is_err(), "{raw}");
        }
        // An out-of-range interface index is ignored rather than trusted.
        let r = AttachResult::parse(
            json!({"ips": [{"address": "10.0.0.1/24", "interface": 9}]}),
            "eth0",
        )
        .unwrap();
        assert_eq!(r.ips[0].interface, None);
    }
}
