//! The `ondc-rating` command line: serve | demo | keygen | sign | verify | token | registry |
//! site-verification | challenge | subscribe | check | mock-seller | bench.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use ondc_rating::bap::auth::{Audience, Claims, mint_hs256_claims};
use ondc_rating::config::{LogFormat, Settings};
use ondc_rating::crypto::{
    EncryptionKeyPair, SigningKeyPair, registry_encryption_public_key, sign_body,
    site_verification_html, solve_challenge, verify_body, verifying_key_from_base64,
};
use ondc_rating::http::Application;
use ondc_rating::http::onboarding::{registry_url, send_subscribe, subscribe_payload};
use ondc_rating::registry::server::{RegistryOptions, parse_site_base};

#[derive(Parser)]
#[command(name = "ondc-rating", version, about = "ONDC rating protocol adapter")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server.
    Serve {
        /// Configuration file.
        #[arg(long, default_value = "config/default.toml")]
        config: PathBuf,
        /// Record every network message sent and received to DIR/traffic.ndjson (for `check`).
        #[arg(long)]
        record: Option<PathBuf>,
    },
    /// Rate an order end to end between a buyer-side and a seller-side adapter on loopback.
    Demo,
    /// Run a mock seller (the seller side, permissive): it ACKs a /rating for any order from a
    /// trusted buyer and answers with a signed /on_rating carrying a feedback form. Prints its
    /// subscriber id, unique key id and public key for the buyer app's peers.
    MockSeller(ondc_rating::bpp::mock::MockSellerArgs),
    /// Run a registry of our own that answers /v2.0/lookup (signed) and /lookup from a file, and
    /// with an encryption key takes /subscribe.
    Registry {
        /// JSON array of subscriber records (flat or nested, as registries return them).
        #[arg(long)]
        file: Option<PathBuf>,
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:8090")]
        bind: String,
        /// The registry's X25519 private key, base64 PKCS#8: enables POST /subscribe.
        #[arg(
            long,
            env = "ONDC_REGISTRY_ENCRYPTION_PRIVATE_KEY",
            hide_env_values = true
        )]
        encryption_private_key: Option<String>,
        /// Reach subscriber ID at URL instead of https://ID while checking its /subscribe
        /// (repeatable).
        #[arg(long = "site-base", value_name = "ID=URL", value_parser = parse_site_base)]
        site_base: Vec<(String, String)>,
    },
    /// Check captured /rating and /on_rating payloads against ONDC's rules: exit 0 when none is
    /// broken (warnings allowed), 1 when one is, 2 when the input cannot be read.
    Check {
        /// Files: one payload, a JSON array of payloads, NDJSON, or traffic records.
        #[arg(required_unless_present = "dir")]
        files: Vec<PathBuf>,
        /// Also check every *.json and *.ndjson file in this directory (repeatable).
        #[arg(long)]
        dir: Vec<PathBuf>,
        /// Print one JSON report instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Load runs against adapter processes on loopback: round-trip, inbound, soak, waiting.
    Bench(ondc_rating::loadtool::BenchArgs),
    /// Print a new Ed25519 signing pair and X25519 encryption pair in ONDC encodings.
    Keygen,
    /// Print the Authorization header value for the body on stdin.
    Sign {
        /// Subscriber id.
        #[arg(long)]
        subscriber_id: String,
        /// Unique key id.
        #[arg(long)]
        unique_key_id: String,
        /// Private key, base64 (32-byte seed or 64-byte seed||public).
        #[arg(long, env = "ONDC_SIGNING_PRIVATE_KEY")]
        private_key: String,
        /// created, Unix seconds (default now).
        #[arg(long)]
        created: Option<i64>,
        /// expires, Unix seconds (default created + 3600).
        #[arg(long)]
        expires: Option<i64>,
    },
    /// Check an Authorization header against the body on stdin; exit 0 when valid, 1 otherwise.
    Verify {
        /// Signer's public key, base64 raw 32 bytes.
        #[arg(long)]
        public_key: String,
        /// The header value.
        #[arg(long)]
        header: String,
        /// "Now", Unix seconds (default the current time).
        #[arg(long)]
        now: Option<i64>,
        /// Allowed clock skew, seconds.
        #[arg(long, default_value_t = 5)]
        skew: i64,
    },
    /// Mint a buyer API bearer token from the configured HS256 secret.
    Token {
        /// User id (the token's sub).
        #[arg(long)]
        user: String,
        /// Configuration file holding buyer.jwt_hs256_secret.
        #[arg(long, default_value = "config/default.toml")]
        config: PathBuf,
        /// Lifetime, seconds.
        #[arg(long, default_value_t = 3600)]
        ttl: i64,
    },
    /// Print the ondc-site-verification.html page for a /subscribe request_id.
    SiteVerification {
        /// Ed25519 private key, base64 (32-byte seed or 64-byte seed||public).
        #[arg(long, env = "ONDC_SIGNING_PRIVATE_KEY")]
        private_key: String,
        /// The request_id sent in /subscribe.
        #[arg(long)]
        request_id: String,
    },
    /// Decrypt a registry /on_subscribe challenge and print the answer.
    Challenge {
        /// Own X25519 private key, base64 PKCS#8.
        #[arg(long, env = "ONDC_ENCRYPTION_PRIVATE_KEY")]
        encryption_private_key: String,
        /// The registry's X25519 public key, base64 SPKI, or staging, preprod, prod.
        #[arg(long)]
        registry_public_key: String,
        /// The challenge, base64.
        #[arg(long)]
        challenge: String,
    },
    /// Build the registry /subscribe request from the configuration and send it (or print it).
    Subscribe {
        /// Configuration file with [identity] and [onboarding].
        #[arg(long)]
        config: PathBuf,
        /// Registry: staging, preprod, prod, or a base URL.
        #[arg(long)]
        env: String,
        /// 1 buyer app, 2 seller app, 4 both (default: onboarding.ops_no, else the enabled roles).
        #[arg(long, value_parser = clap::value_parser!(u8).range(1..=4))]
        ops_no: Option<u8>,
        /// request_id (default: onboarding.request_id).
        #[arg(long)]
        request_id: Option<String>,
        /// Print the payload instead of sending it.
        #[arg(long)]
        dry_run: bool,
    },
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

fn read_stdin() -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    std::io::stdin()
        .read_to_end(&mut body)
        .map_err(|e| format!("cannot read stdin: {e}"))?;
    Ok(body)
}

/// Logs to stderr at `level`; as JSON lines (the event's fields at the top level, the fields of
/// the span it was logged in, such as a request's transaction_id and message_id, under `span`)
/// or as text.
fn init_logging(level: &str, format: LogFormat) {
    let level = level.parse().unwrap_or(tracing::Level::INFO);
    let logs = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => logs.init(),
        LogFormat::Json => logs
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .init(),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // `serve` reads its settings first: they size the runtime (`server.background_threads`).
    let serve = match &cli.command {
        Command::Serve { config, record } => Some(Settings::load(config).map(|mut s| {
            if record.is_some() {
                s.server.record_dir = record.clone();
            }
            s
        })),
        _ => None,
    };
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    runtime.enable_all();
    if let Some(Ok(settings)) = &serve {
        runtime.worker_threads(settings.server.background_worker_threads());
    }
    let result = match runtime.build() {
        Ok(runtime) => runtime.block_on(run(cli, serve)),
        Err(e) => Err(format!("cannot start the runtime: {e}")),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

async fn run(
    cli: Cli,
    serve: Option<Result<Settings, ondc_rating::config::ConfigError>>,
) -> Result<ExitCode, String> {
    match cli.command {
        Command::Serve { .. } => {
            let settings = serve
                .expect("settings are read for serve")
                .map_err(|e| e.to_string())?;
            init_logging(&settings.server.log_level, settings.server.log_format);
            let app = Application::build(settings)
                .await
                .map_err(|e| e.to_string())?;
            tracing::info!(port = app.port(), "listening");
            app.run_until_stopped().await.map_err(|e| e.to_string())?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Demo => {
            init_logging("warn", LogFormat::Text);
            let dir = ondc_rating::demo::scratch_dir();
            let mut out = std::io::stdout();
            let result = ondc_rating::demo::run(&mut out, &dir).await;
            let _ = std::fs::remove_dir_all(&dir);
            result.map_err(|e| e.to_string())?;
            writeln!(
                out,
                "\ndemo finished: rated once, second submission refused"
            )
            .ok();
            Ok(ExitCode::SUCCESS)
        }
        Command::MockSeller(args) => {
            init_logging("info", args.log_format);
            ondc_rating::bpp::mock::run(args, &mut std::io::stdout()).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Registry {
            file,
            bind,
            encryption_private_key,
            site_base,
        } => {
            init_logging("info", LogFormat::Text);
            if file.is_none() && encryption_private_key.is_none() {
                return Err(
                    "nothing to serve: give --file, --encryption-private-key, or both".into(),
                );
            }
            let records = match &file {
                Some(file) => {
                    let text = std::fs::read_to_string(file)
                        .map_err(|e| format!("cannot read {}: {e}", file.display()))?;
                    ondc_rating::registry::server::read_records(&text)
                        .map_err(|e| format!("{}: {e}", file.display()))?
                }
                None => Vec::new(),
            };
            let encryption_keys = encryption_private_key
                .map(|k| EncryptionKeyPair::from_pkcs8_base64(&k))
                .transpose()
                .map_err(|e| format!("--encryption-private-key: {e}"))?;
            if let Some(keys) = &encryption_keys {
                println!("# /subscribe enabled. Adapters subscribing here set in [onboarding]:");
                println!(
                    "registry_encryption_public_key = \"{}\"",
                    keys.public_key_der_base64()
                );
            }
            let options = RegistryOptions {
                encryption_keys,
                site_bases: site_base.into_iter().collect(),
                ..RegistryOptions::default()
            };
            let listener =
                ondc_rating::http::bind_listener(&bind, ondc_rating::config::DEFAULT_BACKLOG)
                    .map_err(|e| format!("cannot listen on {bind}: {e}"))?;
            let count = records.len();
            let (server, _) = ondc_rating::registry::server::serve_with(
                records,
                listener,
                std::sync::Arc::new(ondc_rating::clock::SystemClock),
                options,
            )
            .map_err(|e| e.to_string())?;
            tracing::info!(bind, records = count, "registry listening");
            server.await.map_err(|e| e.to_string())?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Check { files, dir, json } => {
            let payloads = ondc_rating::checker::input::read_inputs(&files, &dir)
                .map_err(|e| e.to_string())?;
            let report = ondc_rating::checker::check_payloads(&payloads);
            if json {
                let text =
                    serde_json::to_string_pretty(&report.to_json()).map_err(|e| e.to_string())?;
                println!("{text}");
            } else {
                print!("{}", report.render_text());
            }
            Ok(ExitCode::from(report.exit_code()))
        }
        Command::Bench(args) => {
            let clean = ondc_rating::loadtool::run(args).await?;
            Ok(if clean {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Command::Keygen => {
            let s = SigningKeyPair::generate().map_err(|e| e.to_string())?;
            let e = EncryptionKeyPair::generate().map_err(|e| e.to_string())?;
            println!("# Private keys: paste into the configuration file.");
            println!("[identity]");
            println!("# Ed25519, 64-byte seed||public");
            println!("signing_private_key = \"{}\"", s.private_key_base64());
            println!();
            println!("[onboarding]");
            println!("# X25519, PKCS#8 (answers the registry's /on_subscribe challenge)");
            println!(
                "encryption_private_key = \"{}\"",
                e.private_key_pkcs8_base64()
            );
            println!();
            println!(
                "# Public keys: for the registry's /subscribe entity.key_pair (not configuration;"
            );
            println!("# `ondc-rating subscribe` derives them from the private keys above).");
            println!("signing_public_key = \"{}\"", s.public_key_base64());
            println!("encryption_public_key = \"{}\"", e.public_key_der_base64());
            Ok(ExitCode::SUCCESS)
        }
        Command::Sign {
            subscriber_id,
            unique_key_id,
            private_key,
            created,
            expires,
        } => {
            let keys = SigningKeyPair::from_base64(&private_key).map_err(|e| e.to_string())?;
            let body = read_stdin()?;
            let created = created.unwrap_or_else(now);
            let expires = expires.unwrap_or(created + 3600);
            print!(
                "{}",
                sign_body(
                    &body,
                    &keys,
                    &subscriber_id,
                    &unique_key_id,
                    created,
                    expires
                )
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Verify {
            public_key,
            header,
            now: at,
            skew,
        } => {
            let key = verifying_key_from_base64(&public_key).map_err(|e| e.to_string())?;
            let body = read_stdin()?;
            match verify_body(&header, &body, &key, at.unwrap_or_else(now), skew) {
                Ok(h) => {
                    println!("valid: signed by {}|{}", h.subscriber_id, h.unique_key_id);
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => {
                    println!("invalid: {e}");
                    Ok(ExitCode::from(1))
                }
            }
        }
        Command::Token { user, config, ttl } => {
            let settings = Settings::load(&config).map_err(|e| e.to_string())?;
            if settings.buyer.jwt_hs256_secret.is_empty() {
                return Err("buyer.jwt_hs256_secret is not set in this configuration".into());
            }
            // Of this server's first audience and issuer when it names any, so that it takes it.
            let b = &settings.buyer;
            let claims = Claims {
                sub: Some(user),
                exp: Some(now() + ttl),
                nbf: None,
                iat: Some(now()),
                aud: b.jwt_audience.first().cloned().map(Audience::One),
                iss: b.jwt_issuers.first().cloned(),
            };
            println!("{}", mint_hs256_claims(&b.jwt_hs256_secret, &claims));
            Ok(ExitCode::SUCCESS)
        }
        Command::SiteVerification {
            private_key,
            request_id,
        } => {
            let keys = SigningKeyPair::from_base64(&private_key).map_err(|e| e.to_string())?;
            print!("{}", site_verification_html(&keys, &request_id));
            Ok(ExitCode::SUCCESS)
        }
        Command::Challenge {
            encryption_private_key,
            registry_public_key,
            challenge,
        } => {
            let answer = solve_challenge(
                &encryption_private_key,
                registry_encryption_public_key(&registry_public_key),
                &challenge,
            )
            .map_err(|e| e.to_string())?;
            println!("{answer}");
            Ok(ExitCode::SUCCESS)
        }
        Command::Subscribe {
            config,
            env,
            ops_no,
            request_id,
            dry_run,
        } => {
            let settings = Settings::load(&config).map_err(|e| e.to_string())?;
            let registry = registry_url(&env).map_err(|e| e.to_string())?;
            let configured = &settings.onboarding.request_id;
            if let Some(r) = request_id
                .as_deref()
                .filter(|r| !configured.is_empty() && r != configured)
            {
                eprintln!(
                    "note: the server's site verification page signs onboarding.request_id \
                     {configured:?}, not {r:?}; the registry checks the page against this request"
                );
            }
            let payload =
                subscribe_payload(&settings, ops_no, request_id.as_deref(), chrono::Utc::now())
                    .map_err(|e| e.to_string())?;
            let pretty = serde_json::to_string_pretty(&payload).map_err(|e| e.to_string())?;
            if dry_run {
                eprintln!("dry run: not sent to {registry}/subscribe");
                println!("{pretty}");
                return Ok(ExitCode::SUCCESS);
            }
            let (status, body) = send_subscribe(&registry, &payload)
                .await
                .map_err(|e| e.to_string())?;
            println!("POST {registry}/subscribe -> {status}");
            println!("{body}");
            // The registry reports refusals as a NACK, sometimes with a 2xx status.
            let nack = serde_json::from_str::<serde_json::Value>(&body)
                .ok()
                .is_some_and(|v| v["message"]["ack"]["status"] == "NACK");
            if (200..300).contains(&status) && !nack {
                Ok(ExitCode::SUCCESS)
            } else {
                Ok(ExitCode::from(1))
            }
        }
    }
}
