//! Servers sharing one store with a store key share the token and identity keys: a token issued
//! by one is accepted by the other, identity documents verify with the one certificate that
//! `imds identity certificate --store` prints, and neither key is in the store in plain text.

use std::process::Command;

use base64::{engine::general_purpose::STANDARD, Engine};

use crate::support::{serve_command, server};

const CONFIG: &str = "[instance]\ninstance-id = \"i-0a1b2c3d4e5f60718\"\n";

fn write_key(path: &std::path::Path, byte: u8) {
    std::fs::write(path, format!("{}\n", STANDARD.encode([byte; 32]))).unwrap();
}

/// The bytes of a SQLite store: its file and its write-ahead log, where recent commits are until
/// a checkpoint.
fn store_files(database: &std::path::Path) -> Vec<u8> {
    let mut bytes = std::fs::read(database).unwrap();
    let wal = database.with_extension("db-wal");
    if let Ok(more) = std::fs::read(wal) {
        bytes.extend(more);
    }
    bytes
}

#[test]
fn servers_on_one_store_accept_each_others_tokens_and_sign_alike() {
    let work = tempfile::tempdir().unwrap();
    let uri = format!("sqlite:{}", work.path().join("shared.db").display());
    let key = work.path().join("store.key");
    write_key(&key, 7);
    let key_arg = key.to_str().unwrap();
    let first = server()
        .config(CONFIG)
        .args(&["--store", &uri, "--store-key-file", key_arg])
        .start();
    let second = server()
        .config(CONFIG)
        .args(&["--store", &uri, "--store-key-file", key_arg])
        .start();
    let token = first.token(600);
    let answer = second.get_with_token("/latest/meta-data/instance-id", &token);
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(answer.text(), "i-0a1b2c3d4e5f60718");
    // A server with keys of its own does not accept it.
    let stranger = server().config(CONFIG).start();
    assert_eq!(
        stranger
            .get_with_token("/latest/meta-data/instance-id", &token)
            .status,
        401
    );

    // The second server's signature verifies with the certificate kept in the store.
    let certificate = Command::new(env!("CARGO_BIN_EXE_imds"))
        .args([
            "identity",
            "certificate",
            "--store",
            &uri,
            "--store-key-file",
            key_arg,
        ])
        .output()
        .unwrap();
    assert!(
        certificate.status.success(),
        "{}",
        String::from_utf8_lossy(&certificate.stderr)
    );
    let directory = work.path();
    std::fs::write(directory.join("certificate"), &certificate.stdout).unwrap();
    std::fs::write(
        directory.join("document"),
        second
            .get("/latest/dynamic/instance-identity/document")
            .body,
    )
    .unwrap();
    let signature = second
        .get("/latest/dynamic/instance-identity/signature")
        .text();
    std::fs::write(
        directory.join("signature"),
        STANDARD.decode(signature.replace('\n', "")).unwrap(),
    )
    .unwrap();
    let openssl = |args: &[&str]| {
        Command::new("openssl")
            .args(args)
            .current_dir(directory)
            .output()
            .unwrap()
    };
    let public_key = openssl(&["x509", "-pubkey", "-noout", "-in", "certificate"]);
    std::fs::write(directory.join("public-key"), public_key.stdout).unwrap();
    let verified = openssl(&[
        "dgst",
        "-sha256",
        "-verify",
        "public-key",
        "-signature",
        "signature",
        "document",
    ]);
    assert_eq!(
        String::from_utf8_lossy(&verified.stdout).trim(),
        "Verified OK",
        "{}",
        String::from_utf8_lossy(&verified.stderr)
    );

    // Neither key is in the store file in plain text, and neither server wrote its own.
    drop((first, second));
    let database = store_files(&work.path().join("shared.db"));
    assert!(database
        .windows(16)
        .any(|window| window == b"CREATE TABLE sec"));
    assert!(!database.windows(10).any(|window| window == b"-----BEGIN"));

    // A server given another key cannot open them and says why.
    let other_key = work.path().join("other.key");
    write_key(&other_key, 8);
    let state = tempfile::tempdir().unwrap();
    let refused = serve_command(state.path())
        .args([
            "--store",
            &uri,
            "--store-key-file",
            other_key.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("same --store-key-file"), "{stderr}");
}

#[test]
fn a_bad_store_key_file_is_a_usage_error() {
    let work = tempfile::tempdir().unwrap();
    let key = work.path().join("store.key");
    std::fs::write(&key, STANDARD.encode([1u8; 8])).unwrap();
    let output = serve_command(work.path())
        .arg("--store-key-file")
        .arg(&key)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("8 bytes; it must be 32"), "{stderr}");
}

#[test]
fn static_role_secrets_are_sealed_in_the_store() {
    let work = tempfile::tempdir().unwrap();
    let database = work.path().join("shared.db");
    let uri = format!("sqlite:{}", database.display());
    let key = work.path().join("store.key");
    write_key(&key, 9);
    let key_arg = key.to_str().unwrap();
    let secret = "wJalrXUtnFEMIstaticroleSECRET";
    let token = "IQoJstaticroleSESSIONTOKEN";
    let imds = server()
        .config(&format!(
            "[instance]\ninstance-id = \"i-0a1b2c3d4e5f60718\"\n[instance.iam]\nrole-name = \"app\"\n\
             [[roles]]\nname = \"app\"\nprovider = \"static\"\naccess-key-id = \"ASIASEALEDSEALED0001\"\n\
             secret-access-key = \"{secret}\"\nsession-token = \"{token}\"\n"
        ))
        .args(&["--store", &uri, "--store-key-file", key_arg])
        .start();
    let served = imds
        .get("/latest/meta-data/iam/security-credentials/app")
        .text();
    assert!(
        served.contains(secret) && served.contains(token),
        "{served}"
    );
    // Set through the control API too: sealed the same way.
    let put = imds.admin(
        "PUT",
        "/v1/roles/web",
        Some(r#"{"provider": "static", "access-key-id": "ASIAWEBWEBWEBWEB0001", "secret-access-key": "web-role-SECRET-value"}"#),
    );
    assert_eq!(put.status, 200, "{put:?}");
    drop(imds);
    let stored = String::from_utf8_lossy(&store_files(&database)).into_owned();
    assert!(
        stored.contains("ASIASEALEDSEALED0001"),
        "the access key id is stored as is"
    );
    for plain in [secret, token, "web-role-SECRET-value"] {
        assert!(!stored.contains(plain), "{plain} is in the store file");
    }

    // Restarted with the key: the sealed roles load and serve.
    let imds = server()
        .config("[instance]\ninstance-id = \"i-0a1b2c3d4e5f60718\"\n[instance.iam]\nrole-name = \"web\"\n")
        .args(&["--store", &uri, "--store-key-file", key_arg])
        .start();
    let served = imds
        .get("/latest/meta-data/iam/security-credentials/web")
        .text();
    assert!(served.contains("web-role-SECRET-value"), "{served}");
    drop(imds);

    // Without it, the server says what it needs instead of serving roles it cannot open.
    let state = tempfile::tempdir().unwrap();
    let refused = serve_command(state.path())
        .args(["--store", &uri])
        .output()
        .unwrap();
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("is sealed") && stderr.contains("--store-key-file"),
        "{stderr}"
    );
}
