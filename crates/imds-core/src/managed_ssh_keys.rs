//! EC2 Instance Connect's keys: the public keys `SendSSHPublicKey` puts into an instance's
//! metadata for 60 seconds, and the `managed-ssh-keys/active-keys/USER` document that carries
//! them to the instance.
//!
//! Sources (docs/behaviour.md, "EC2 Instance Connect"): the Instance Connect API reference and
//! its service model (field limits, the OS user pattern, 60 seconds), and the on-instance
//! scripts of aws/aws-ec2-instance-connect-config (`eic_curl_authorized_keys`,
//! `eic_parse_authorized_keys`), which say which paths are read and how each key's block is laid
//! out: `#Name=value` lines, the key line, the signature lines, a blank line.
//!
//! Keys expire by time alone: nothing removes them; every reader asks for the keys active at
//! its `now`, and a new key drops the expired ones.

use std::collections::BTreeMap;

use base64::Engine as _;

/// How long a key stays, in seconds. Source: the API reference of `SendSSHPublicKey` ("The key
/// remains for 60 seconds").
pub const KEY_LIFETIME_SECONDS: i64 = 60;

/// The shortest and longest `SSHPublicKey` the API takes (service model, shape `SSHPublicKey`).
pub const KEY_MIN_LEN: usize = 80;
/// See `KEY_MIN_LEN`.
pub const KEY_MAX_LEN: usize = 4096;

/// The fewest bits of an RSA key taken. Source: the EC2 User Guide, "Create a key pair" (EC2
/// supports 2048-bit SSH-2 RSA keys; longer ones are taken too, see docs/behaviour.md).
pub const RSA_MIN_BITS: usize = 2048;

/// Checks an `InstanceOSUser` as the service model's pattern does: 1 to 32 characters; either
/// a letter or `_` first, then letters, digits and `@._-`, with `$` allowed last; or digits
/// first followed by a letter or `@._-` (2 to 32 characters in all). The error says what to give.
pub fn check_os_user(user: &str) -> Result<(), String> {
    let bytes = user.as_bytes();
    let middle = |c: &u8| c.is_ascii_alphanumeric() || b"@._-".contains(c);
    let last = |c: &u8| c.is_ascii_alphanumeric() || b"$_-".contains(c);
    // `rest` is what follows the leading part: `middle` characters, at most `max_middle` of them,
    // optionally followed by one `last` character.
    let tail_ok = |rest: &[u8], max_middle: usize| match rest.split_last() {
        None => true,
        Some((end, init)) => {
            (rest.len() <= max_middle && rest.iter().all(middle))
                || (init.len() <= max_middle && init.iter().all(middle) && last(end))
        }
    };
    let letter_first = !bytes.is_empty()
        && (bytes[0].is_ascii_alphabetic() || bytes[0] == b'_')
        && tail_ok(&bytes[1..], 30);
    let digits = bytes.iter().take_while(|c| c.is_ascii_digit()).count();
    let digits_first = (2..=32).contains(&bytes.len())
        && digits >= 1
        && digits < bytes.len()
        && (bytes[digits].is_ascii_alphabetic() || b"@._-".contains(&bytes[digits]))
        && tail_ok(&bytes[digits + 1..], 32);
    if bytes.len() > 32 || !(letter_first || digits_first) {
        return Err(format!(
            "{user:?} is not an OS user name (1 to 32 letters, digits and @._-, not all digits, \
             starting with a letter, _ or digits, $ allowed last)"
        ));
    }
    Ok(())
}

/// Checks an `AvailabilityZone` as the service model does: 6 to 32 characters matching
/// `^(\w+-){2,3}\d+\w+$`.
pub fn check_availability_zone(zone: &str) -> Result<(), String> {
    let word = |part: &str| {
        !part.is_empty() && part.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
    };
    let parts: Vec<&str> = zone.split('-').collect();
    let valid = (6..=32).contains(&zone.len())
        && (3..=4).contains(&parts.len())
        && parts[..parts.len() - 1].iter().all(|part| word(part))
        && {
            let end = parts[parts.len() - 1];
            end.len() >= 2 && end.starts_with(|c: char| c.is_ascii_digit()) && word(end)
        };
    if !valid {
        return Err(format!("{zone:?} is not an Availability Zone name"));
    }
    Ok(())
}

/// A public key as the API took it: one OpenSSH `authorized_keys` line, `TYPE BASE64 [COMMENT]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey {
    line: String,
}

impl PublicKey {
    /// Parses `text` (`SSHPublicKey`): 80 to 4096 characters, one line (a final line feed is
    /// dropped), an `ssh-rsa` key of at least 2048 bits or an `ssh-ed25519` key, its blob
    /// well-formed and naming the same type. The error says what is wrong.
    pub fn parse(text: &str) -> Result<PublicKey, String> {
        if !(KEY_MIN_LEN..=KEY_MAX_LEN).contains(&text.len()) {
            return Err(format!(
                "the key is {} characters long; the API takes {KEY_MIN_LEN} to {KEY_MAX_LEN}",
                text.len()
            ));
        }
        let line = text.trim();
        if line.contains(['\n', '\r']) {
            return Err("the key is more than one line; give one OpenSSH public key line".into());
        }
        let mut fields = line.split_ascii_whitespace();
        let (Some(kind), Some(encoded)) = (fields.next(), fields.next()) else {
            return Err("the key is not an OpenSSH public key line (TYPE BASE64 [COMMENT])".into());
        };
        let blob = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .map_err(|_| "the key's second field is not base64".to_owned())?;
        let mut reader = Reader(&blob);
        let inner = reader.string().ok_or("the key's blob is cut short")?;
        if inner != kind.as_bytes() {
            return Err(format!(
                "the key's blob is of another type than {kind:?} names"
            ));
        }
        match kind {
            "ssh-rsa" => {
                let _exponent = reader.string().ok_or("the RSA key's blob is cut short")?;
                let modulus = reader.string().ok_or("the RSA key's blob is cut short")?;
                let bits = mpint_bits(modulus);
                if bits < RSA_MIN_BITS {
                    return Err(format!(
                        "the RSA key has {bits} bits; EC2 takes RSA keys of {RSA_MIN_BITS} bits or more"
                    ));
                }
            }
            "ssh-ed25519" => {
                let point = reader.string().ok_or("the ED25519 key's blob is cut short")?;
                if point.len() != 32 {
                    return Err("the ED25519 key is not 32 bytes".into());
                }
            }
            other => {
                return Err(format!(
                    "key type {other:?} is not taken; give an ssh-rsa (2048 bits or more) or ssh-ed25519 key"
                ))
            }
        }
        if !reader.0.is_empty() {
            return Err("the key's blob has bytes after the key".into());
        }
        Ok(PublicKey {
            line: line.to_owned(),
        })
    }

    /// The key's `authorized_keys` line.
    pub fn line(&self) -> &str {
        &self.line
    }
}

/// Reads the SSH wire format's length-prefixed strings (RFC 4251 §5).
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn string(&mut self) -> Option<&'a [u8]> {
        let (length, rest) = self.0.split_first_chunk::<4>()?;
        let length = usize::try_from(u32::from_be_bytes(*length)).ok()?;
        if rest.len() < length {
            return None;
        }
        let (value, rest) = rest.split_at(length);
        self.0 = rest;
        Some(value)
    }
}

/// The bit length of an unsigned SSH `mpint`.
fn mpint_bits(value: &[u8]) -> usize {
    let significant: &[u8] = match value.iter().position(|byte| *byte != 0) {
        Some(start) => &value[start..],
        None => return 0,
    };
    significant.len() * 8 - significant[0].leading_zeros() as usize
}

/// One key sent to an instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManagedKey {
    /// The OS user it may log in as.
    pub os_user: String,
    /// The key.
    pub key: PublicKey,
    /// Unix seconds from which it is no longer served.
    pub expires_at: i64,
    /// The `SendSSHPublicKey` request that sent it.
    pub request_id: String,
    /// Who sent it (`#Caller=`).
    pub caller: String,
}

impl ManagedKey {
    /// What the block's signature covers: its `#` lines and its key line, each ending in a line
    /// feed (`eic_parse_authorized_keys` verifies exactly these bytes).
    pub fn signed_data(&self, instance_id: &str) -> String {
        format!(
            "#Timestamp={}\n#Instance={instance_id}\n#Caller={}\n#Request={}\n{}\n",
            self.expires_at,
            self.caller,
            self.request_id,
            self.key.line()
        )
    }
}

/// A key with the base64 signature of its block, if it was signed.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Kept {
    key: ManagedKey,
    signature: Option<String>,
}

/// The keys an instance holds, in the order they were sent; some may have expired.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ManagedKeys {
    keys: Vec<Kept>,
}

impl ManagedKeys {
    /// These keys without those expired at `now` (Unix seconds), and `key` added last, unsigned.
    pub fn with(&self, key: ManagedKey, now: i64) -> ManagedKeys {
        self.with_signed(key, None, now)
    }

    /// As `with`, the block of `key` carrying `signature` (base64, one line) after its key line.
    pub fn with_signed(&self, key: ManagedKey, signature: Option<String>, now: i64) -> ManagedKeys {
        let mut keys: Vec<Kept> = self
            .keys
            .iter()
            .filter(|kept| kept.key.expires_at > now)
            .cloned()
            .collect();
        keys.push(Kept { key, signature });
        ManagedKeys { keys }
    }

    /// The keys still served at `now`.
    pub fn active_at(&self, now: i64) -> impl Iterator<Item = &ManagedKey> {
        self.kept_at(now).map(|kept| &kept.key)
    }

    fn kept_at(&self, now: i64) -> impl Iterator<Item = &Kept> {
        self.keys
            .iter()
            .filter(move |kept| kept.key.expires_at > now)
    }

    /// When the next of the keys active at `now` expires, if any is.
    pub fn next_expiry_after(&self, now: i64) -> Option<i64> {
        self.active_at(now).map(|key| key.expires_at).min()
    }

    /// Every OS user with an active key at `now`, each with the document
    /// `managed-ssh-keys/active-keys/USER` answers: one block per key, oldest first.
    pub fn documents_at(&self, now: i64, instance_id: &str) -> BTreeMap<&str, String> {
        let mut documents: BTreeMap<&str, String> = BTreeMap::new();
        for kept in self.kept_at(now) {
            let document = documents.entry(kept.key.os_user.as_str()).or_default();
            block(document, kept, instance_id);
        }
        documents
    }

    /// True when no key was ever kept (or all were dropped).
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

/// Appends `kept`'s block: the fields the on-instance parser reads (`#Timestamp=` the expiry in
/// Unix seconds, `#Instance=`, `#Caller=`, `#Request=`), the key line, the signature line when
/// the key was signed, then a blank line.
fn block(document: &mut String, kept: &Kept, instance_id: &str) {
    document.push_str(&kept.key.signed_data(instance_id));
    if let Some(signature) = &kept.signature {
        document.push_str(signature);
        document.push('\n');
    }
    document.push('\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    const ED25519: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBNhFc1R2IF6bIePrctFQFKCdmRXHXKsAEsvwU/5QSZS me@host";

    fn rsa_line(bits: usize) -> String {
        let mut blob = Vec::new();
        let mut string = |bytes: &[u8]| {
            blob.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
            blob.extend_from_slice(bytes);
        };
        string(b"ssh-rsa");
        string(&[1, 0, 1]);
        let mut modulus = vec![0u8; bits / 8 + 1];
        modulus[1] = 0xC5;
        string(&modulus);
        format!(
            "ssh-rsa {} test",
            base64::engine::general_purpose::STANDARD.encode(&blob)
        )
    }

    #[track_caller]
    fn user(name: &str, valid: bool) {
        assert_eq!(check_os_user(name).is_ok(), valid, "{name:?}");
    }

    #[test]
    fn os_users_are_what_the_service_model_takes() {
        for name in [
            "ec2-user",
            "ubuntu",
            "_x",
            "a",
            "a$",
            "user.name@corp",
            "1a",
            "123abc$",
        ] {
            user(name, true);
        }
        user(&"a".repeat(32), true);
        user(&format!("{}$", "a".repeat(31)), true);
        user(&format!("{}.", "a".repeat(30)), true);
        for name in [
            "",
            "123",
            "1$",
            "-x",
            ".x",
            "a$b",
            "two words",
            "a/b",
            "ü",
            "root\n",
        ] {
            user(name, false);
        }
        user(&"a".repeat(33), false);
        // 32 characters must end in a letter, digit or `$_-`: 30 middle characters at most.
        user(&format!("{}.", "a".repeat(31)), false);
    }

    #[test]
    fn zones_are_what_the_service_model_takes() {
        for zone in ["us-east-1a", "us-gov-west-1b", "us-east-12"] {
            assert!(check_availability_zone(zone).is_ok(), "{zone}");
        }
        for zone in [
            "us-east",
            "useast1a",
            "us-east-a",
            "us-east-1",
            "a-b-c-d-1a",
            "us east-1a",
            "us-east-1-wl1",
        ] {
            assert!(check_availability_zone(zone).is_err(), "{zone}");
        }
    }

    #[test]
    fn keys_are_parsed_and_checked() {
        let key = PublicKey::parse(&format!("{ED25519}\n")).unwrap();
        assert_eq!(key.line(), ED25519);
        assert!(PublicKey::parse(&rsa_line(2048)).is_ok());
        assert!(PublicKey::parse(&rsa_line(4096)).is_ok());
        let short = PublicKey::parse(&rsa_line(1024)).unwrap_err();
        assert!(short.contains("1024 bits"), "{short}");
        for (text, expect) in [
            ("ssh-ed25519 AAAA", "characters long"),
            (&*"x".repeat(4097), "characters long"),
            (&*format!("{ED25519}\n{ED25519}"), "more than one line"),
            (&*ED25519.replace("ssh-ed25519", "ssh-rsa"), "another type"),
            (&*ED25519.replace("AAAAC3", "!AAAC3"), "not base64"),
            (&*format!("ssh-ed25519 {}", "z".repeat(90)), "not base64"),
            (&*"word ".repeat(20), "cut short"),
        ] {
            let error = PublicKey::parse(text).unwrap_err();
            assert!(error.contains(expect), "{text:?}: {error}");
        }
        let ecdsa = "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBOwsoWH7KB33Roh9WNkMDKH8oyGhsQtr4cBVPnveNaNF8mRyzYG2tLLQy/w4lplwpWh68nqHvV1XgDgJxPIn7D0= x";
        let error = PublicKey::parse(ecdsa).unwrap_err();
        assert!(error.contains("not taken"), "{error}");
    }

    fn managed(user: &str, expires_at: i64, request: &str) -> ManagedKey {
        ManagedKey {
            os_user: user.to_owned(),
            key: PublicKey::parse(ED25519).unwrap(),
            expires_at,
            request_id: request.to_owned(),
            caller: "arn:aws:iam::123456789012:user/admin".to_owned(),
        }
    }

    #[test]
    fn keys_expire_by_time_and_add_up_per_user() {
        let keys = ManagedKeys::default()
            .with(managed("ec2-user", 160, "r1"), 100)
            .with(managed("ec2-user", 170, "r2"), 110)
            .with(managed("ubuntu", 175, "r3"), 115);
        assert_eq!(keys.next_expiry_after(100), Some(160));
        let documents = keys.documents_at(120, "i-0123456789abcdef0");
        assert_eq!(
            documents.keys().copied().collect::<Vec<_>>(),
            ["ec2-user", "ubuntu"]
        );
        let expect = format!(
            "#Timestamp=160\n#Instance=i-0123456789abcdef0\n#Caller=arn:aws:iam::123456789012:user/admin\n\
             #Request=r1\n{ED25519}\n\n\
             #Timestamp=170\n#Instance=i-0123456789abcdef0\n#Caller=arn:aws:iam::123456789012:user/admin\n\
             #Request=r2\n{ED25519}\n\n"
        );
        assert_eq!(documents["ec2-user"], expect);
        // At its expiry a key is gone; the other user's key stays.
        let later = keys.documents_at(170, "i-0123456789abcdef0");
        assert_eq!(later.keys().copied().collect::<Vec<_>>(), ["ubuntu"]);
        assert_eq!(keys.next_expiry_after(170), Some(175));
        assert!(keys.documents_at(175, "i-1").is_empty());
        assert_eq!(keys.next_expiry_after(175), None);
        // A signed key's block carries its signature after the key line.
        let signed = ManagedKeys::default().with_signed(
            managed("ec2-user", 160, "r5"),
            Some("c2lnbmF0dXJl".to_owned()),
            100,
        );
        let key = managed("ec2-user", 160, "r5");
        assert_eq!(
            signed.documents_at(120, "i-1")["ec2-user"],
            format!("{}c2lnbmF0dXJl\n\n", key.signed_data("i-1"))
        );
        assert!(key
            .signed_data("i-1")
            .starts_with("#Timestamp=160\n#Instance=i-1\n#Caller="));
        // A new key drops the expired ones.
        let renewed = keys.with(managed("root", 300, "r4"), 172);
        assert_eq!(renewed.active_at(0).count(), 2);
    }
}
