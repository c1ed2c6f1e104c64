//! Resolving a container's user through the image's `/etc/passwd` and `/etc/group`, as
//! containerd's `WithUser` and `WithAdditionalGIDs` do. The caller reads both files out of
//! the rootfs (or passes `None` when they are absent).

use crimux_core::{Error, Result};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PasswdEntry {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupEntry {
    pub name: String,
    pub gid: u32,
    pub members: Vec<String>,
}

/// The uid, primary gid and supplementary gids a process runs with.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ResolvedUser {
    pub uid: u32,
    pub gid: u32,
    /// Starts with the primary gid, as containerd writes it.
    pub additional_gids: Vec<u32>,
}

/// Parses `/etc/passwd`, skipping comments and malformed lines as libc does.
pub fn parse_passwd(text: &str) -> Vec<PasswdEntry> {
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            Some(PasswdEntry {
                name: f.first()?.to_string(),
                uid: f.get(2)?.trim().parse().ok()?,
                gid: f.get(3)?.trim().parse().ok()?,
            })
        })
        .collect()
}

/// Parses `/etc/group`, skipping comments and malformed lines.
pub fn parse_group(text: &str) -> Vec<GroupEntry> {
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            Some(GroupEntry {
                name: f.first()?.to_string(),
                gid: f.get(2)?.trim().parse().ok()?,
                members: f
                    .get(3)
                    .map(|m| {
                        m.split(',')
                            .map(str::trim)
                            .filter(|m| !m.is_empty())
                            .map(String::from)
                            .collect()
                    })
                    .unwrap_or_default(),
            })
        })
        .collect()
}

/// A user or group part of a USER string: a number when it parses as one (then it must be
/// within 0..=i32::MAX, as containerd requires), else a name.
enum Part<'a> {
    Id(u32),
    Name(&'a str),
}

fn part<'a>(s: &'a str, what: &str, whole: &str) -> Result<Part<'a>> {
    match s.parse::<i64>() {
        Ok(v) if (0..=i32::MAX as i64).contains(&v) => Ok(Part::Id(v as u32)),
        Ok(_) => Err(Error::InvalidArgument(format!(
            "invalid user {whole:?}: {what} out of range"
        ))),
        Err(_) if s.is_empty() => Err(Error::InvalidArgument(format!(
            "invalid user {whole:?}: empty {what}"
        ))),
        Err(_) => Ok(Part::Name(s)),
    }
}

/// Resolves `uid`, `uid:gid`, `name`, `name:group` (or mixes) to ids. A bare uid takes
/// the gid of its passwd entry, or 0 without one; a name must exist in the files.
pub fn resolve_ids(userstr: &str, passwd: Option<&str>, group: Option<&str>) -> Result<(u32, u32)> {
    let users = passwd.map(parse_passwd).unwrap_or_default();
    let lookup_user = |name: &str| {
        users.iter().find(|u| u.name == name).ok_or_else(|| {
            Error::InvalidArgument(format!(
                "user {name:?} not found in the image's /etc/passwd"
            ))
        })
    };
    let (user, grp) = match userstr.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (userstr, None),
    };
    if grp.is_some_and(|g| g.contains(':')) {
        return Err(Error::InvalidArgument(format!("invalid user {userstr:?}")));
    }
    let (uid, default_gid) = match part(user, "uid", userstr)? {
        Part::Id(uid) => (
            uid,
            users.iter().find(|u| u.uid == uid).map_or(0, |u| u.gid),
        ),
        Part::Name(name) => {
            let u = lookup_user(name)?;
            (u.uid, u.gid)
        }
    };
    let gid = match grp {
        None => default_gid,
        Some(g) => match part(g, "gid", userstr)? {
            Part::Id(gid) => gid,
            Part::Name(name) => {
                let groups = group.map(parse_group).unwrap_or_default();
                groups
                    .iter()
                    .find(|g| g.name == name)
                    .map(|g| g.gid)
                    .ok_or_else(|| {
                        Error::InvalidArgument(format!(
                            "group {name:?} not found in the image's /etc/group"
                        ))
                    })?
            }
        },
    };
    // `name:gid` with a numeric uid part still needs no lookup; `uid:gid` never does.
    Ok((uid, gid))
}

/// The gids of the groups in `/etc/group` that list the user (named directly, or found by
/// uid in `/etc/passwd`) as a member; none when the user has no name.
pub fn member_gids(user: &str, passwd: Option<&str>, group: Option<&str>) -> Vec<u32> {
    let Some(group) = group else { return vec![] };
    let name = match user.parse::<i64>() {
        Ok(uid) => match passwd
            .map(parse_passwd)
            .unwrap_or_default()
            .into_iter()
            .find(|u| i64::from(u.uid) == uid)
        {
            Some(u) => u.name,
            None => return vec![],
        },
        Err(_) => user.to_string(),
    };
    parse_group(group)
        .into_iter()
        .filter(|g| g.name != name && g.members.contains(&name))
        .map(|g| g.gid)
        .collect()
}

/// What the CRI says about a process's user.
#[derive(Clone, Copy, Debug, Default)]
pub struct UserRequest<'a> {
    pub run_as_user: Option<i64>,
    pub run_as_group: Option<i64>,
    /// Wins over `run_as_user` when both are set.
    pub run_as_username: &'a str,
    /// The image's `User`, used when the CRI names no user.
    pub image_user: &'a str,
    pub supplemental_groups: &'a [i64],
    /// Whether the image's `/etc/group` memberships join the supplementary groups
    /// (containers: yes; the sandbox: no).
    pub image_groups: bool,
}

fn id(v: i64, what: &str) -> Result<u32> {
    u32::try_from(v).map_err(|_| Error::InvalidArgument(format!("invalid {what} {v}")))
}

/// Resolves a process's user as containerd does: the CRI's user (name over uid) with its
/// group, else the image's `User`, else root; then the supplementary gids: the primary gid,
/// the image's group memberships of the user, and `supplemental_groups`, without repeats.
pub fn resolve(
    req: &UserRequest,
    passwd: Option<&str>,
    group: Option<&str>,
) -> Result<ResolvedUser> {
    let mut userstr = match (req.run_as_username, req.run_as_user) {
        ("", Some(uid)) => id(uid, "run_as_user")?.to_string(),
        ("", None) => String::new(),
        (name, _) => name.to_string(),
    };
    if let Some(gid) = req.run_as_group {
        if userstr.is_empty() {
            return Err(Error::InvalidArgument(format!(
                "run_as_group {gid} is set without run_as_user or run_as_username"
            )));
        }
        userstr = format!("{userstr}:{}", id(gid, "run_as_group")?);
    }
    if userstr.is_empty() {
        userstr = req.image_user.to_string();
    }
    let (uid, gid) = if userstr.is_empty() {
        (0, 0)
    } else {
        resolve_ids(&userstr, passwd, group)?
    };
    let mut gids = vec![gid];
    if req.image_groups {
        let user_part = userstr
            .split(':')
            .next()
            .filter(|u| !u.is_empty())
            .unwrap_or("0");
        gids.extend(member_gids(user_part, passwd, group));
    }
    for g in req.supplemental_groups {
        gids.push(id(*g, "supplemental group")?);
    }
    let mut additional_gids = Vec::with_capacity(gids.len());
    for g in gids {
        if !additional_gids.contains(&g) {
            additional_gids.push(g);
        }
    }
    Ok(ResolvedUser {
        uid,
        gid,
        additional_gids,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\n# comment\n\
        app:x:1000:1000::/home/app:/bin/sh\nweb:x:33:33::/var/www:/sbin/nologin\nbroken line\n";
    const GROUP: &str = "root:x:0:\napp:x:1000:app\nstaff:x:50:app,web\n\
        video:x:44:web\nwheel:x:10:root\n";

    fn req<'a>() -> UserRequest<'a> {
        UserRequest {
            image_groups: true,
            ..Default::default()
        }
    }

    #[test]
    fn user_table() {
        type Case<'a> = (&'a str, UserRequest<'a>, u32, u32, Vec<u32>);
        let cases: Vec<Case> = vec![
            ("nothing: root", req(), 0, 0, vec![0, 10]),
            (
                "image uid",
                UserRequest {
                    image_user: "1000",
                    ..req()
                },
                1000,
                1000,
                vec![1000, 50],
            ),
            (
                "image uid without entry",
                UserRequest {
                    image_user: "4242",
                    ..req()
                },
                4242,
                0,
                vec![0],
            ),
            (
                "image uid:gid",
                UserRequest {
                    image_user: "33:44",
                    ..req()
                },
                33,
                44,
                vec![44, 50],
            ),
            (
                "image name",
                UserRequest {
                    image_user: "web",
                    ..req()
                },
                33,
                33,
                vec![33, 50, 44],
            ),
            (
                "image name:group",
                UserRequest {
                    image_user: "app:video",
                    ..req()
                },
                1000,
                44,
                vec![44, 50],
            ),
            (
                "image uid:group",
                UserRequest {
                    image_user: "1000:staff",
                    ..req()
                },
                1000,
                50,
                vec![50],
            ),
            (
                "run_as_user over image",
                UserRequest {
                    run_as_user: Some(33),
                    image_user: "app",
                    ..req()
                },
                33,
                33,
                vec![33, 50, 44],
            ),
            (
                "run_as_username over run_as_user",
                UserRequest {
                    run_as_user: Some(33),
                    run_as_username: "app",
                    ..req()
                },
                1000,
                1000,
                vec![1000, 50],
            ),
            (
                "run_as_group",
                UserRequest {
                    run_as_user: Some(1000),
                    run_as_group: Some(3000),
                    ..req()
                },
                1000,
                3000,
                vec![3000, 50],
            ),
            (
                "supplemental groups appended, deduplicated",
                UserRequest {
                    run_as_user: Some(1000),
                    supplemental_groups: &[4000, 50],
                    ..req()
                },
                1000,
                1000,
                vec![1000, 50, 4000],
            ),
            (
                "sandbox: no image memberships",
                UserRequest {
                    run_as_user: Some(1000),
                    supplemental_groups: &[7],
                    image_groups: false,
                    ..req()
                },
                1000,
                1000,
                vec![1000, 7],
            ),
        ];
        for (what, r, uid, gid, gids) in cases {
            let got =
                resolve(&r, Some(PASSWD), Some(GROUP)).unwrap_or_else(|e| panic!("{what}: {e}"));
            assert_eq!(
                (got.uid, got.gid, got.additional_gids),
                (uid, gid, gids),
                "{what}"
            );
        }
    }

    #[test]
    fn errors_table() {
        let cases: Vec<(UserRequest, &str)> = vec![
            (
                UserRequest {
                    run_as_username: "nobody",
                    ..req()
                },
                "\"nobody\"",
            ),
            (
                UserRequest {
                    image_user: "app:nogroup",
                    ..req()
                },
                "\"nogroup\"",
            ),
            (
                UserRequest {
                    run_as_group: Some(5),
                    ..req()
                },
                "without run_as_user",
            ),
            (
                UserRequest {
                    run_as_user: Some(-1),
                    ..req()
                },
                "run_as_user",
            ),
            (
                UserRequest {
                    image_user: "-5",
                    ..req()
                },
                "out of range",
            ),
            (
                UserRequest {
                    image_user: "a:b:c",
                    ..req()
                },
                "invalid user",
            ),
        ];
        for (r, needle) in cases {
            match resolve(&r, Some(PASSWD), Some(GROUP)) {
                Err(Error::InvalidArgument(m)) => {
                    assert!(m.contains(needle), "{m:?} lacks {needle:?}")
                }
                other => panic!("{r:?}: expected InvalidArgument, got {other:?}"),
            }
        }
        // Without the files, a name can't resolve but a uid can.
        assert!(resolve(
            &UserRequest {
                image_user: "app",
                ..req()
            },
            None,
            None
        )
        .is_err());
        let r = resolve(
            &UserRequest {
                image_user: "5:6",
                ..req()
            },
            None,
            None,
        )
        .unwrap();
        assert_eq!((r.uid, r.gid, r.additional_gids), (5, 6, vec![6]));
    }
}
