//! The identity document verifies with `openssl` exactly as AWS documents for its own
//! certificates (EC2 User Guide, "Verify the instance identity document").

use std::process::Command;

use crate::support::server;

fn openssl(args: &[&str], directory: &std::path::Path) -> std::process::Output {
    Command::new("openssl")
        .args(args)
        .current_dir(directory)
        .output()
        .expect("openssl is installed")
}

#[test]
fn openssl_verifies_signature_pkcs7_and_rsa2048() {
    let imds = server().start();
    let work = tempfile::tempdir().unwrap();
    let directory = work.path();
    let certificate = Command::new(env!("CARGO_BIN_EXE_imds"))
        .args(["identity", "certificate", "--state-dir"])
        .arg(&imds.state_dir)
        .output()
        .unwrap();
    assert!(certificate.status.success());
    assert!(String::from_utf8_lossy(&certificate.stdout).starts_with("-----BEGIN CERTIFICATE-----"));
    std::fs::write(directory.join("certificate"), &certificate.stdout).unwrap();
    let document = imds.get("/latest/dynamic/instance-identity/document").body;
    std::fs::write(directory.join("document"), &document).unwrap();

    // signature: base64 -d, then openssl dgst -sha256 -verify with the certificate's key.
    let signature = imds
        .get("/latest/dynamic/instance-identity/signature")
        .text();
    use base64::Engine;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(signature.replace('\n', ""))
        .unwrap();
    std::fs::write(directory.join("signature"), raw).unwrap();
    let key = openssl(
        &["x509", "-pubkey", "-noout", "-in", "certificate"],
        directory,
    );
    std::fs::write(directory.join("key"), key.stdout).unwrap();
    let verified = openssl(
        &[
            "dgst",
            "-sha256",
            "-verify",
            "key",
            "-signature",
            "signature",
            "document",
        ],
        directory,
    );
    assert!(
        verified.status.success(),
        "{}",
        String::from_utf8_lossy(&verified.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&verified.stdout).trim(),
        "Verified OK"
    );

    // pkcs7 and rsa2048: add the PEM armour, openssl smime -verify ... | tee document.
    for name in ["pkcs7", "rsa2048"] {
        let body = imds
            .get(&format!("/latest/dynamic/instance-identity/{name}"))
            .text();
        std::fs::write(
            directory.join(name),
            format!("-----BEGIN PKCS7-----\n{body}\n-----END PKCS7-----\n"),
        )
        .unwrap();
        let verified = openssl(
            &[
                "smime",
                "-verify",
                "-in",
                name,
                "-inform",
                "PEM",
                "-certfile",
                "certificate",
                "-noverify",
            ],
            directory,
        );
        assert!(
            verified.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&verified.stderr)
        );
        assert_eq!(
            verified.stdout, document,
            "{name} does not carry the document"
        );
    }

    // A document from another key does not verify.
    let other = server().start();
    std::fs::write(
        directory.join("document"),
        other.get("/latest/dynamic/instance-identity/document").body,
    )
    .unwrap();
    let refused = openssl(
        &[
            "dgst",
            "-sha256",
            "-verify",
            "key",
            "-signature",
            "signature",
            "document",
        ],
        directory,
    );
    assert!(!refused.status.success());
}

#[test]
fn identity_survives_restart() {
    let state = tempfile::tempdir().unwrap();
    let first = server().state_dir(state.path()).start();
    let document = first.get("/latest/dynamic/instance-identity/document").body;
    let signature = first
        .get("/latest/dynamic/instance-identity/signature")
        .body;
    let mac = first.get("/latest/meta-data/mac").body;
    drop(first);
    let second = server().state_dir(state.path()).start();
    assert_eq!(
        second
            .get("/latest/dynamic/instance-identity/document")
            .body,
        document
    );
    assert_eq!(
        second
            .get("/latest/dynamic/instance-identity/signature")
            .body,
        signature
    );
    assert_eq!(second.get("/latest/meta-data/mac").body, mac);
}
