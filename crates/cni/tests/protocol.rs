//! The CNI protocol crimux speaks, observed by recording plugins (shell scripts that log
//! their environment and stdin): chaining, capabilities, CNI_ARGS, DEL order and cache,
//! rollback, error mapping and timeouts. Needs root (a real netns is the ADD target).
#![cfg(target_os = "linux")]

mod common;

use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::NsDir;
use crimux_cni::{AttachRequest, Cni, ConfigError, NetNs};
use crimux_core::sandbox::{PortMapping, Protocol, SandboxMetadata};
use crimux_core::Error;
use serde_json::{json, Value};

/// One recording plugin; its behaviour depends on the name it is called by.
const RECORDER: &str = r#"#!/bin/sh
name=$(basename "$0")
n=$(ls "$LOG" | wc -l)
tag=$(printf %03d "$n")-$CNI_COMMAND-$name
cat > "$LOG/$tag.json"
env | grep '^CNI_' | sort > "$LOG/$tag.env"
[ "$CNI_COMMAND" = ADD ] || exit 0
case "$name" in
  first) addr=10.199.255.1 ;;
  second) addr=10.199.255.2 ;;
  fail) echo '{"cniVersion":"1.0.0","code":7,"msg":"bad config","details":"no subnet"}'; exit 1 ;;
  busy) echo '{"cniVersion":"1.0.0","code":11,"msg":"try later"}'; exit 1 ;;
  slow) exec sleep 30 ;;
esac
printf '{"cniVersion":"1.0.0","interfaces":[{"name":"%s","sandbox":"%s"}],"ips":[{"address":"%s/24","interface":0}]}' \
  "$CNI_IFNAME" "$CNI_NETNS" "$addr"
"#;

struct Fixture {
    _tmp: tempfile::TempDir,
    conf: PathBuf,
    bins: Vec<PathBuf>,
    cache: PathBuf,
    log: PathBuf,
    nsdir: NsDir,
}

impl Fixture {
    fn new() -> Fixture {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        let (conf, bin, empty_bin, cache, log) = (
            root.join("net.d"),
            root.join("bin"),
            root.join("no-bin"),
            root.join("cache"),
            root.join("log"),
        );
        for d in [&conf, &bin, &empty_bin, &log] {
            std::fs::create_dir_all(d).unwrap();
        }
        let script = root.join("recorder.sh");
        std::fs::write(
            &script,
            RECORDER.replace("$LOG", &log.display().to_string()),
        )
        .unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        for name in ["first", "second", "fail", "busy", "slow"] {
            symlink(&script, bin.join(name)).unwrap();
        }
        Fixture {
            _tmp: tmp,
            conf,
            bins: vec![empty_bin, bin],
            cache,
            log,
            nsdir: NsDir::new(),
        }
    }

    fn write_list(&self, file: &str, plugins: Value) {
        let list = json!({"cniVersion": "1.0.0", "name": "recnet", "plugins": plugins});
        std::fs::write(self.conf.join(file), list.to_string()).unwrap();
    }

    fn cni(&self) -> Cni {
        Cni::new(&self.conf, self.bins.clone(), &self.cache)
    }

    fn request(&self, id: &str) -> (NetNs, AttachRequest) {
        let ns = NetNs::create(self.nsdir.path(), id).expect("create netns (root?)");
        let pod = SandboxMetadata {
            name: "web".into(),
            uid: "uid-1".into(),
            namespace: "default".into(),
            attempt: 0,
        };
        let mut req = AttachRequest::new(id.into(), ns.path().to_path_buf(), pod);
        req.port_mappings = vec![
            PortMapping {
                protocol: Protocol::Tcp,
                container_port: 80,
                host_port: 8080,
                host_ip: "127.0.0.1".into(),
            },
            // No host port: documentation only, not passed to plugins.
            PortMapping {
                protocol: Protocol::Udp,
                container_port: 53,
                host_port: 0,
                host_ip: String::new(),
            },
        ];
        (ns, req)
    }

    /// `(command, plugin, stdin, env)` of every call so far, in order.
    fn calls(&self) -> Vec<(String, String, Value, String)> {
        let mut names: Vec<String> = std::fs::read_dir(&self.log)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".json"))
            .collect();
        names.sort();
        names
            .iter()
            .map(|n| {
                let stem = n.trim_end_matches(".json");
                let mut parts = stem.splitn(3, '-').skip(1);
                let (cmd, plugin) = (parts.next().unwrap(), parts.next().unwrap());
                let stdin = std::fs::read(self.log.join(n)).unwrap();
                let env = std::fs::read_to_string(self.log.join(format!("{stem}.env"))).unwrap();
                (
                    cmd.into(),
                    plugin.into(),
                    serde_json::from_slice(&stdin).unwrap(),
                    env,
                )
            })
            .collect()
    }

    fn order(&self) -> Vec<String> {
        self.calls()
            .into_iter()
            .map(|(c, p, _, _)| format!("{c} {p}"))
            .collect()
    }
}

#[tokio::test]
async fn add_chains_results_and_del_uses_the_cache() {
    let fx = Fixture::new();
    fx.write_list(
        "10-rec.conflist",
        json!([{"type": "first", "capabilities": {"portMappings": true}, "x": 1}, {"type": "second"}]),
    );
    let cni = fx.cni();
    cni.status().expect("status ok");
    let (ns, req) = fx.request("sandbox1");
    let res = cni.setup(&req).await.expect("setup");
    // The last plugin's result is the attachment's.
    assert_eq!(res.primary_ip(), Some("10.199.255.2".parse().unwrap()));

    let calls = fx.calls();
    let order: Vec<_> = calls
        .iter()
        .map(|(c, p, _, _)| format!("{c} {p}"))
        .collect();
    assert_eq!(order, ["ADD first", "ADD second"]);
    let (first_in, second_in) = (&calls[0].2, &calls[1].2);
    assert_eq!(first_in["name"], "recnet");
    assert_eq!(first_in["cniVersion"], "1.0.0");
    assert_eq!(first_in["x"], 1);
    assert!(first_in.get("prevResult").is_none());
    assert_eq!(
        first_in["runtimeConfig"],
        json!({"portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp", "hostIP": "127.0.0.1"}]})
    );
    assert!(
        second_in.get("runtimeConfig").is_none(),
        "second declares no capability"
    );
    assert_eq!(
        second_in["prevResult"]["ips"][0]["address"],
        "10.199.255.1/24"
    );
    let env = &calls[0].3;
    let netns = format!("CNI_NETNS={}", ns.path().display());
    let cni_path = format!("CNI_PATH={}:{}", fx.bins[0].display(), fx.bins[1].display());
    for want in [
        "CNI_COMMAND=ADD",
        "CNI_CONTAINERID=sandbox1",
        "CNI_IFNAME=eth0",
        "CNI_ARGS=IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web;K8S_POD_INFRA_CONTAINER_ID=sandbox1;K8S_POD_UID=uid-1",
        &netns,
        &cni_path,
    ] {
        assert!(env.lines().any(|l| l == want), "{want} missing from\n{env}");
    }
    assert!(fx.cache.join("sandbox1.json").is_file());

    // CHECK runs in order with the cached result.
    cni.check(&req).await.expect("check");
    let calls = fx.calls();
    assert_eq!(&fx.order()[2..], ["CHECK first", "CHECK second"]);
    assert_eq!(
        calls[2].2["prevResult"]["ips"][0]["address"],
        "10.199.255.2/24"
    );

    // A second setup of the same sandbox refuses.
    let again = cni.setup(&req).await.unwrap_err();
    assert!(matches!(again, Error::AlreadyExists(_)), "{again:?}");

    // The admin swaps the config; DEL still runs the one ADD ran, in reverse.
    std::fs::remove_file(fx.conf.join("10-rec.conflist")).unwrap();
    fx.write_list("10-other.conflist", json!([{"type": "second"}]));
    ns.remove().unwrap();
    cni.teardown(&req).await.expect("teardown");
    let calls = fx.calls();
    assert_eq!(&fx.order()[4..], ["DEL second", "DEL first"]);
    assert_eq!(
        calls[4].2["prevResult"]["ips"][0]["address"],
        "10.199.255.2/24"
    );
    assert!(
        calls[5].2.get("runtimeConfig").is_some(),
        "cached capability args"
    );
    assert!(
        calls[4].3.lines().any(|l| l == "CNI_NETNS="),
        "netns gone: empty CNI_NETNS"
    );
    assert!(!fx.cache.join("sandbox1.json").exists());

    // Idempotent: no cache now, so today's config gets a DEL, which succeeds.
    cni.teardown(&req).await.expect("second teardown");
    assert_eq!(&fx.order()[6..], ["DEL second"]);
    assert!(cni.check(&req).await.unwrap_err().is_not_found());
}

#[tokio::test]
async fn a_failed_add_is_rolled_back_and_reported() {
    let fx = Fixture::new();
    fx.write_list(
        "10-rec.conflist",
        json!([{"type": "first"}, {"type": "fail"}]),
    );
    let (_ns, req) = fx.request("sandbox2");
    let err = fx.cni().setup(&req).await.unwrap_err();
    assert!(matches!(err, Error::Internal(_)), "{err:?}");
    let msg = err.to_string();
    for needle in ["fail", "ADD", "code 7", "bad config", "no subnet"] {
        assert!(msg.contains(needle), "{needle:?} missing from {msg}");
    }
    assert_eq!(
        fx.order(),
        ["ADD first", "ADD fail", "DEL fail", "DEL first"]
    );
    assert!(!fx.cache.join("sandbox2.json").exists());
}

#[tokio::test]
async fn plugin_errors_map_to_codes() {
    let fx = Fixture::new();
    fx.write_list("10-rec.conflist", json!([{"type": "busy"}]));
    let (_ns, req) = fx.request("sandbox3");
    let err = fx.cni().setup(&req).await.unwrap_err();
    assert!(matches!(err, Error::Unavailable(_)), "{err:?}");

    // A missing binary is found before anything runs, and the error names the dirs.
    std::fs::remove_file(fx.conf.join("10-rec.conflist")).unwrap();
    fx.write_list(
        "10-rec.conflist",
        json!([{"type": "first"}, {"type": "nosuch"}]),
    );
    let before = fx.order().len();
    let err = fx.cni().setup(&req).await.unwrap_err();
    assert!(matches!(err, Error::FailedPrecondition(_)), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("nosuch") && msg.contains(&fx.bins[0].display().to_string()),
        "{msg}"
    );
    assert!(msg.contains(&fx.bins[1].display().to_string()), "{msg}");
    assert_eq!(fx.order().len(), before, "nothing ran");
    assert!(matches!(
        fx.cni().status(),
        Err(ConfigError::MissingPlugin { .. })
    ));
}

#[tokio::test]
async fn a_hung_plugin_times_out() {
    let fx = Fixture::new();
    fx.write_list("10-rec.conflist", json!([{"type": "slow"}]));
    let (_ns, req) = fx.request("sandbox4");
    let started = Instant::now();
    let err = fx
        .cni()
        .with_timeout(Duration::from_secs(1))
        .setup(&req)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::DeadlineExceeded(_)), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[tokio::test]
async fn without_config_setup_fails_and_teardown_is_a_no_op() {
    let fx = Fixture::new();
    let (_ns, req) = fx.request("sandbox5");
    let err = fx.cni().setup(&req).await.unwrap_err();
    assert!(matches!(err, Error::FailedPrecondition(_)), "{err:?}");
    assert!(
        err.to_string().contains("no valid CNI network config"),
        "{err}"
    );
    assert!(matches!(
        fx.cni().status(),
        Err(ConfigError::NoConfig { .. })
    ));
    fx.cni().teardown(&req).await.expect("nothing to tear down");
    assert!(fx.order().is_empty());
}

#[tokio::test]
async fn bad_requests_are_refused() {
    let fx = Fixture::new();
    fx.write_list("10-rec.conflist", json!([{"type": "first"}]));
    let (_ns, mut req) = fx.request("sandbox6");
    req.pod.name = "a;b".into();
    assert!(matches!(
        fx.cni().setup(&req).await,
        Err(Error::InvalidArgument(_))
    ));
    let (_ns2, mut req) = fx.request("sandbox7");
    req.container_id = "../x".into();
    assert!(matches!(
        fx.cni().setup(&req).await,
        Err(Error::InvalidArgument(_))
    ));
    let (_ns3, mut req) = fx.request("sandbox8");
    req.netns = Path::new("/nonexistent/netns").into();
    assert!(fx.cni().setup(&req).await.unwrap_err().is_not_found());
    assert!(fx.order().is_empty());
}
