//! `crimux certs`: mutual-TLS material for a TCP delegate (on Windows: the Linux crimux in a
//! WSL2 distro, a `kind = "cri"` backend).
//!
//! One run makes a private CA, a server certificate for the delegate's TLS endpoint, and a
//! client certificate for crimux (`[backend.tls]`). The delegate's endpoint is a relay in
//! front of a unix socket (wsl2-setup.sh runs socat): the distro crimux's CRI socket, or
//! for a `kind = "containerd"` delegate containerd's own socket, since containerd's `[grpc]
//! tcp_address` carries only the CRI plugin's service, not the native API crimux uses.
//! Keys are ECDSA P-256. Everything is generated in memory first; files are written to
//! temporary names and renamed at the end, so a failure leaves the directory as it was
//! (except with `--force`, where replaced files are gone). Keys are mode 0600 in a 0700
//! directory on unix; on Windows the install script sets the ACLs.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcgen::{
    date_time_ymd, BasicConstraints, CertificateParams, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose,
};

use crate::cli::{CertsArgs, GlobalArgs};
use crate::platform;

/// The files, in the order they are written and listed.
pub const FILES: [&str; 6] = [
    "ca.pem",
    "ca-key.pem",
    "server.pem",
    "server-key.pem",
    "client.pem",
    "client-key.pem",
];

/// The longest validity accepted (100 years); a typo should not mint an eternal key.
const MAX_DAYS: u32 = 36_500;
const DAY: Duration = Duration::from_secs(86_400);

/// The six PEM texts, in [`FILES`] order.
pub struct Bundle {
    pub pems: [String; 6],
}

pub fn main(_global: &GlobalArgs, args: &CertsArgs) -> ExitCode {
    let bundle = match generate(&args.server_names, args.days, SystemTime::now()) {
        Ok(bundle) => bundle,
        Err(e) => return crate::fail(2, &format!("certs: {e}")),
    };
    let dir = match write(&args.out, &bundle, args.force) {
        Ok(dir) => dir,
        Err(e) => return crate::fail(1, &format!("certs: {e}")),
    };
    print!("{}", usage(&dir, &args.server_names));
    ExitCode::SUCCESS
}

/// Makes the CA, the server and the client certificates. `names` are the server's SANs
/// (each an IP address or a DNS name); `now` anchors the validity window, which starts a
/// day early to tolerate clock skew between Windows and the distro.
pub fn generate(names: &[String], days: u32, now: SystemTime) -> Result<Bundle, String> {
    if names.is_empty() || names.iter().any(|n| n.trim().is_empty()) {
        return Err("--server-name must name at least one DNS name or IP address".into());
    }
    if let Some(bad) = names.iter().find(|n| !valid_san(n)) {
        return Err(format!(
            "--server-name {bad:?} is neither an IP address nor a DNS name"
        ));
    }
    if days == 0 || days > MAX_DAYS {
        return Err(format!("--days must be between 1 and {MAX_DAYS}"));
    }
    let since_epoch = now
        .duration_since(UNIX_EPOCH)
        .map_err(|_| "the system clock is before 1970".to_string())?;
    let (y, m, d) = civil_from_days(since_epoch.as_secs() / 86_400 - 1);
    let not_before = date_time_ymd(y, m, d);
    let not_after = not_before + DAY * (days + 1);

    let ca_key = KeyPair::generate().map_err(fail("CA key"))?;
    let mut ca = CertificateParams::default();
    ca.distinguished_name = name("crimux delegate CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    (ca.not_before, ca.not_after) = (not_before, not_after);
    let ca_cert = ca.self_signed(&ca_key).map_err(fail("CA certificate"))?;

    let leaf = |sans: Vec<String>, cn: &str, eku: ExtendedKeyUsagePurpose| {
        let mut p = CertificateParams::new(sans).map_err(fail("--server-name"))?;
        p.distinguished_name = name(cn);
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        p.extended_key_usages = vec![eku];
        p.use_authority_key_identifier_extension = true;
        (p.not_before, p.not_after) = (not_before, not_after);
        Ok::<_, String>(p)
    };
    let server_key = KeyPair::generate().map_err(fail("server key"))?;
    let server = leaf(
        names.to_vec(),
        &names[0],
        ExtendedKeyUsagePurpose::ServerAuth,
    )?
    .signed_by(&server_key, &ca_cert, &ca_key)
    .map_err(fail("server certificate"))?;
    let client_key = KeyPair::generate().map_err(fail("client key"))?;
    let client = leaf(Vec::new(), "crimux", ExtendedKeyUsagePurpose::ClientAuth)?
        .signed_by(&client_key, &ca_cert, &ca_key)
        .map_err(fail("client certificate"))?;

    Ok(Bundle {
        pems: [
            ca_cert.pem(),
            ca_key.serialize_pem(),
            server.pem(),
            server_key.serialize_pem(),
            client.pem(),
            client_key.serialize_pem(),
        ],
    })
}

/// An IP address, or a DNS name (letters, digits, `-` in dot-separated labels, optionally
/// a leading `*.`), as Go's TLS verifies them.
fn valid_san(name: &str) -> bool {
    if name.parse::<std::net::IpAddr>().is_ok() {
        return true;
    }
    let host = name.strip_prefix("*.").unwrap_or(name);
    !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}

/// Names what failed, for `map_err`.
fn fail(what: &'static str) -> impl Fn(rcgen::Error) -> String {
    move |e| format!("{what}: {e}")
}

fn name(cn: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "crimux");
    dn.push(DnType::CommonName, cn);
    dn
}

/// Writes the bundle into `dir` (created private if missing) and returns its absolute
/// path. Existing files are an error unless `force`; nothing is replaced until every file
/// has been written under a temporary name.
pub fn write(dir: &Path, bundle: &Bundle, force: bool) -> Result<PathBuf, String> {
    platform::create_private_dir(dir)
        .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let dir = std::path::absolute(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    if !force {
        let present: Vec<&str> = FILES
            .iter()
            .copied()
            .filter(|f| dir.join(f).exists())
            .collect();
        if !present.is_empty() {
            return Err(format!(
                "{} already holds {}; pass --force to replace them",
                dir.display(),
                present.join(", ")
            ));
        }
    }
    let staged: Vec<(PathBuf, PathBuf)> = FILES
        .iter()
        .map(|f| (dir.join(format!(".{f}.tmp")), dir.join(f)))
        .collect();
    let cleanup = |upto: usize| {
        for (tmp, _) in &staged[..upto] {
            let _ = std::fs::remove_file(tmp);
        }
    };
    for (i, ((tmp, _), pem)) in staged.iter().zip(&bundle.pems).enumerate() {
        let private = FILES[i].ends_with("-key.pem");
        if let Err(e) = platform::write_new_file(tmp, pem.as_bytes(), private) {
            cleanup(i + 1);
            return Err(format!("cannot write {}: {e}", tmp.display()));
        }
    }
    for (i, (tmp, path)) in staged.iter().enumerate() {
        if let Err(e) = std::fs::rename(tmp, path) {
            for (tmp, _) in &staged[i..] {
                let _ = std::fs::remove_file(tmp);
            }
            return Err(format!("cannot rename into {}: {e}", path.display()));
        }
    }
    Ok(dir)
}

/// What to put in which config, with the paths just written.
pub fn usage(dir: &Path, names: &[String]) -> String {
    let at = |f: &str| dir.join(f).display().to_string();
    let server_name = names.first().map(String::as_str).unwrap_or("localhost");
    let mut out = String::new();
    out.push_str(&format!("wrote {}:\n", dir.display()));
    for f in FILES {
        let what = match f {
            "ca.pem" => "CA certificate: both sides trust it",
            "ca-key.pem" => "CA key: keep offline; needed only to issue more certificates",
            "server.pem" => "the delegate's TLS endpoint certificate",
            "server-key.pem" => "the delegate's TLS endpoint key (copy into the distro)",
            "client.pem" => "crimux's client certificate",
            _ => "crimux's client key",
        };
        out.push_str(&format!("  {f:<15} {what}\n"));
    }
    out.push_str(&format!(
        "\ncrimux config, in the delegate's [[backend]] (address = \"tcp://127.0.0.1:<port>\"):\n\
         [backend.tls]\n\
         ca = '{}'\n\
         cert = '{}'\n\
         key = '{}'\n\
         server_name = \"{server_name}\"\n",
        at("ca.pem"),
        at("client.pem"),
        at("client-key.pem"),
    ));
    out.push_str(
        "\nthe delegate (inside the WSL2 distro), after copying ca.pem, server.pem and\n\
         server-key.pem to /etc/crimux/tls/ (key mode 0600): a TLS relay in front of the\n\
         distro crimux's socket, as manifests/windows/wsl2-setup.sh installs it (for a\n\
         kind = \"containerd\" delegate, connect to containerd's socket instead):\n\
         socat OPENSSL-LISTEN:<port>,bind=127.0.0.1,reuseaddr,fork,nodelay,\
         cert=/etc/crimux/tls/server.pem,key=/etc/crimux/tls/server-key.pem,\
         cafile=/etc/crimux/tls/ca.pem,verify=1 \\\n\
         \x20 UNIX-CONNECT:/run/crimux/crimux.sock\n",
    );
    out
}

/// Days since 1970-01-01 to a (year, month, day) date in the proleptic Gregorian calendar
/// (Howard Hinnant's `civil_from_days`), so no date crate is needed.
fn civil_from_days(days: u64) -> (i32, u8, u8) {
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u8;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u8;
    let year = (yoe + era * 400 + i64::from(month <= 2)) as i32;
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(59), (1970, 3, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(19_782), (2024, 2, 29));
        assert_eq!(civil_from_days(20_786), (2026, 11, 29));
    }

    #[test]
    fn bad_arguments_are_errors() {
        let now = SystemTime::now();
        let names = vec!["localhost".to_string()];
        assert!(generate(&[], 10, now).is_err());
        assert!(generate(&[" ".into()], 10, now).is_err());
        assert!(generate(&names, 0, now).is_err());
        assert!(generate(&names, MAX_DAYS + 1, now).is_err());
        let err = generate(&["bad name!".into()], 10, now)
            .err()
            .expect("invalid DNS name");
        assert!(err.contains("--server-name"), "{err}");
        for good in ["localhost", "wsl.local", "*.example.com", "10.0.0.1", "::1"] {
            assert!(valid_san(good), "{good}");
        }
        for bad in ["a..b", "-a", "a_b", "*", "x.-y"] {
            assert!(!valid_san(bad), "{bad}");
        }
    }

    #[test]
    fn bundle_is_six_pems() {
        let names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
        let b = generate(&names, 30, SystemTime::now()).expect("generate");
        for (f, pem) in FILES.iter().zip(&b.pems) {
            let want = if f.ends_with("-key.pem") {
                "-----BEGIN PRIVATE KEY-----"
            } else {
                "-----BEGIN CERTIFICATE-----"
            };
            assert!(pem.starts_with(want), "{f}: {pem}");
        }
        let text = usage(Path::new("/certs"), &names);
        assert!(text.contains("cert = '/certs/client.pem'"), "{text}");
        assert!(text.contains("server_name = \"localhost\""), "{text}");
        assert!(
            text.contains("cafile=/etc/crimux/tls/ca.pem,verify=1"),
            "{text}"
        );
    }
}
