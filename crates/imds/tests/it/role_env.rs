//! `imds env` and `imds exec`: a role's credentials in environment variables, straight from the
//! config (no server running).

use std::process::{Command, Output};

use crate::sts::{venv, Moto, ROLE_ARN};

const STATIC_CONFIG: &str = "[[roles]]\nname = \"fixed\"\nprovider = \"static\"\n\
    access-key-id = \"AKIAIOSFODNN7EXAMPLE\"\n\
    secret-access-key = \"wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\"\nsession-token = \"it's\"\n";

fn imds(config: &str, args: &[&str]) -> Output {
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("imds.toml");
    std::fs::write(&path, config).unwrap();
    // The subcommand, then the config, then the rest (which may end with `-- COMMAND...`).
    Command::new(env!("CARGO_BIN_EXE_imds"))
        .arg(args[0])
        .arg("--config")
        .arg(&path)
        .args(&args[1..])
        .env("AWS_ACCESS_KEY_ID", "AKIAHOSTSOURCEKEY000")
        .env("AWS_SECRET_ACCESS_KEY", "host-secret")
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .output()
        .expect("run imds")
}

#[test]
fn env_prints_shell_exports_of_the_role() {
    let output = imds(STATIC_CONFIG, &["env", "--role", "fixed"]);
    assert!(output.status.success(), "{output:?}");
    let text = String::from_utf8(output.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "export AWS_ACCESS_KEY_ID='AKIAIOSFODNN7EXAMPLE'");
    assert_eq!(
        lines[1],
        "export AWS_SECRET_ACCESS_KEY='wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY'"
    );
    assert_eq!(lines[2], "export AWS_SESSION_TOKEN='it'\\''s'");
    assert!(lines[3].starts_with("export AWS_CREDENTIAL_EXPIRATION='20"));
    assert_eq!(lines.len(), 4);

    // The exports mean what they say to a shell.
    let shell = Command::new("sh")
        .args(["-c", &format!("{text}\nprintf %s \"$AWS_SESSION_TOKEN\"")])
        .output()
        .unwrap();
    assert_eq!(shell.stdout, b"it's");
}

#[test]
fn exec_runs_the_command_with_the_role_in_its_environment() {
    let output = imds(
        STATIC_CONFIG,
        &[
            "exec",
            "--role",
            "fixed",
            "--",
            "sh",
            "-c",
            "printf '%s %s' \"$AWS_ACCESS_KEY_ID\" \"$AWS_SESSION_TOKEN\"; exit 7",
        ],
    );
    assert_eq!(output.stdout, b"AKIAIOSFODNN7EXAMPLE it's");
    assert_eq!(output.status.code(), Some(7), "the command's exit status");

    let missing = imds(
        STATIC_CONFIG,
        &["exec", "--role", "fixed", "--", "/no/such/program"],
    );
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("cannot run /no/such/program"));
}

#[test]
fn exec_with_an_sts_role_gives_the_command_the_assumed_role() {
    let moto = Moto::start();
    let config = format!(
        "[instance]\ninstance-id = \"i-0fedcba9876543210\"\n\
         [[roles]]\nname = \"app\"\nprovider = \"sts\"\nrole-arn = \"{ROLE_ARN}\"\n\
         endpoint-url = \"{}\"\nregion = \"us-east-1\"\n",
        moto.endpoint()
    );
    let python = venv().join("bin/python");
    let script = format!(
        "import boto3; print(boto3.client('sts', endpoint_url='{}', region_name='us-east-1')\
         .get_caller_identity()['Arn'])",
        moto.endpoint()
    );
    let output = imds(
        &config,
        &[
            "exec",
            "--role",
            "app",
            "--",
            python.to_str().unwrap(),
            "-c",
            &script,
        ],
    );
    assert!(output.status.success(), "{output:?}");
    assert_eq!(
        String::from_utf8(output.stdout).unwrap().trim(),
        "arn:aws:sts::123456789012:assumed-role/app/i-0fedcba9876543210"
    );
    assert_eq!(moto.calls(), 2, "one AssumeRole, one GetCallerIdentity");

    // STS unreachable: a runtime failure, the STS error on stderr only, nothing run.
    drop(moto);
    let failed = imds(
        &config,
        &["exec", "--role", "app", "--", "sh", "-c", "echo ran"],
    );
    assert_eq!(failed.status.code(), Some(1));
    assert!(failed.stdout.is_empty());
    assert!(
        String::from_utf8_lossy(&failed.stderr).contains("cannot obtain credentials for role app")
    );
}

#[test]
fn without_a_config_env_and_exec_ask_the_running_server_for_the_served_set() {
    let moto = Moto::start();
    let imds = crate::support::server()
        .config(&format!(
            "[instance]\ninstance-id = \"i-0123456789abcdef0\"\n[instance.iam]\nrole-name = \"app\"\n\
             [[roles]]\nname = \"app\"\nprovider = \"sts\"\nrole-arn = \"{ROLE_ARN}\"\n\
             endpoint-url = \"{}\"\nregion = \"us-east-1\"\n",
            moto.endpoint()
        ))
        .env("AWS_ACCESS_KEY_ID", "AKIAHOSTSOURCEKEY000")
        .env("AWS_SECRET_ACCESS_KEY", "host-secret")
        .start();
    imds.wait_until_applied();
    // The control API answers the IMDSv2 set unless asked for another: what a guest with a
    // token gets.
    let token = imds.token(60);
    let served: serde_json::Value = serde_json::from_str(
        &imds
            .get_with_token("/latest/meta-data/iam/security-credentials/app", &token)
            .text(),
    )
    .unwrap();
    let through_server = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_imds"))
            .args(args)
            .arg("--endpoint")
            .arg(format!("http://{}", imds.admin_address))
            .arg("--state-dir")
            .arg(&imds.state_dir)
            .args(["--role", "app"])
            .env_remove("IMDS_ADMIN_TOKEN")
            .env_remove("IMDS_CONFIG")
            .output()
            .unwrap()
    };

    let env = through_server(&["env"]);
    assert!(env.status.success(), "{env:?}");
    let text = String::from_utf8(env.stdout).unwrap();
    for (name, field) in [
        ("AWS_ACCESS_KEY_ID", "AccessKeyId"),
        ("AWS_SECRET_ACCESS_KEY", "SecretAccessKey"),
        ("AWS_SESSION_TOKEN", "Token"),
        ("AWS_CREDENTIAL_EXPIRATION", "Expiration"),
    ] {
        let line = format!("export {name}='{}'", served[field].as_str().unwrap());
        assert!(
            text.lines().any(|got| got == line),
            "{line} missing from {text}"
        );
    }

    let python = venv().join("bin/python");
    let script = format!(
        "import boto3; print(boto3.client('sts', endpoint_url='{}', region_name='us-east-1')\
         .get_caller_identity()['Arn'])",
        moto.endpoint()
    );
    let mut exec = Command::new(env!("CARGO_BIN_EXE_imds"));
    exec.arg("exec")
        .arg("--endpoint")
        .arg(format!("http://{}", imds.admin_address))
        .arg("--state-dir")
        .arg(&imds.state_dir)
        .args(["--role", "app", "--"])
        .arg(&python)
        .args(["-c", &script])
        .env_remove("IMDS_ADMIN_TOKEN")
        .env_remove("IMDS_CONFIG")
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null");
    let output = exec.output().unwrap();
    assert!(output.status.success(), "{output:?}");
    assert_eq!(
        String::from_utf8(output.stdout).unwrap().trim(),
        "arn:aws:sts::123456789012:assumed-role/app/i-0123456789abcdef0"
    );
    // Two AssumeRole calls made the served IMDSv1 and IMDSv2 sets (tokens are optional), the
    // third call is the script's GetCallerIdentity: no new AssumeRole.
    assert_eq!(moto.calls(), 3, "the served set, not a new AssumeRole");

    // An unknown instance is a usage error naming it.
    let unknown = Command::new(env!("CARGO_BIN_EXE_imds"))
        .args(["env", "--endpoint"])
        .arg(format!("http://{}", imds.admin_address))
        .arg("--state-dir")
        .arg(&imds.state_dir)
        .args(["--role", "app", "--instance-id", "i-00000000000000000"])
        .env_remove("IMDS_ADMIN_TOKEN")
        .env_remove("IMDS_CONFIG")
        .output()
        .unwrap();
    assert_eq!(unknown.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("i-00000000000000000"));
}
