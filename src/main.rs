//! The `ondc-rating` command line: serve | demo | keygen | sign | verify | token.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use ondc_rating::bap::auth::mint_hs256;
use ondc_rating::config::Settings;
use ondc_rating::crypto::{
    EncryptionKeyPair, SigningKeyPair, sign_body, verify_body, verifying_key_from_base64,
};
use ondc_rating::http::Application;

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
    },
    /// Rate an order end to end between a buyer-side and a seller-side adapter on loopback.
    Demo,
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

fn init_logging(level: &str) {
    let level = level.parse().unwrap_or(tracing::Level::INFO);
    tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(std::io::stderr)
        .init();
}

#[tokio::main]
async fn main() -> ExitCode {
    match run(Cli::parse()).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

async fn run(cli: Cli) -> Result<ExitCode, String> {
    match cli.command {
        Command::Serve { config } => {
            let settings = Settings::load(&config).map_err(|e| e.to_string())?;
            init_logging(&settings.server.log_level);
            let app = Application::build(settings)
                .await
                .map_err(|e| e.to_string())?;
            tracing::info!(port = app.port(), "listening");
            app.run_until_stopped().await.map_err(|e| e.to_string())?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Demo => {
            init_logging("warn");
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
        Command::Keygen => {
            let s = SigningKeyPair::generate().map_err(|e| e.to_string())?;
            let e = EncryptionKeyPair::generate().map_err(|e| e.to_string())?;
            println!(
                "# Ed25519 signing pair (identity.signing_private_key; registry signing_public_key)"
            );
            println!("signing_private_key = \"{}\"", s.private_key_base64());
            println!("signing_public_key = \"{}\"", s.public_key_base64());
            println!("# X25519 encryption pair (registry encr_public_key; on_subscribe challenge)");
            println!(
                "encryption_private_key = \"{}\"",
                e.private_key_pkcs8_base64()
            );
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
            println!(
                "{}",
                mint_hs256(&settings.buyer.jwt_hs256_secret, &user, now(), ttl)
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}
