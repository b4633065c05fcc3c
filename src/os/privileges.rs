//! Dropping root after the capture handle is open (`hbscope live --user NAME`,
//! like `tcpdump -Z`). The only module that changes process credentials.

use nix::unistd::{setgid, setgroups, setuid, Gid, Uid, User};

/// Why privileges could not be dropped.
#[derive(Debug, thiserror::Error)]
pub enum DropError {
    /// No such user.
    #[error("--user {0}: no such user; give an existing account such as `nobody`")]
    NoSuchUser(String),
    /// The user lookup failed.
    #[error("--user {name}: could not look the user up: {detail}")]
    Lookup {
        /// The name.
        name: String,
        /// What failed.
        detail: String,
    },
    /// Changing groups or ids failed.
    #[error("--user {name}: could not switch to uid {uid}/gid {gid}: {detail}; run hbscope as root to use --user")]
    Switch {
        /// The name.
        name: String,
        /// Target uid.
        uid: u32,
        /// Target gid.
        gid: u32,
        /// What failed.
        detail: String,
    },
}

/// Switches the whole process to `name`'s uid and primary gid, dropping
/// supplementary groups. Call it after opening what needs privileges.
///
/// # Errors
/// [`DropError`] when the user does not exist or the switch fails.
pub fn drop_to(name: &str) -> Result<(u32, u32), DropError> {
    let user = User::from_name(name)
        .map_err(|e| DropError::Lookup {
            name: name.to_owned(),
            detail: e.to_string(),
        })?
        .ok_or_else(|| DropError::NoSuchUser(name.to_owned()))?;
    let (uid, gid): (Uid, Gid) = (user.uid, user.gid);
    let fail = |e: nix::Error| DropError::Switch {
        name: name.to_owned(),
        uid: uid.as_raw(),
        gid: gid.as_raw(),
        detail: e.to_string(),
    };
    // Order matters: groups and gid while still root, then uid.
    setgroups(&[gid]).map_err(fail)?;
    setgid(gid).map_err(fail)?;
    setuid(uid).map_err(fail)?;
    Ok((uid.as_raw(), gid.as_raw()))
}
