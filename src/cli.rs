//! The command line (design.md "Command line").

use crate::ops::logging::{self, LogFormat};
use clap::{Parser, Subcommand};
use std::io::BufRead;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser, Debug)]
#[command(
    name = "portcullis",
    version,
    about = "A reverse-proxy session gateway"
)]
pub struct Cli {
    /// Log format for stderr.
    #[arg(long, value_enum, default_value = "json", global = true)]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Serve (the default command).
    Run {
        #[arg(short, long, default_value = "gateway.toml")]
        config: PathBuf,
    },
    /// Validate the config, users file, keys and certificates; exit 0 or 1.
    Check {
        #[arg(short, long, default_value = "gateway.toml")]
        config: PathBuf,
    },
    /// Gateway + echo upstream + demo user, in memory; needs no files.
    Demo {
        #[arg(long, default_value = "127.0.0.1:8443")]
        https: SocketAddr,
        #[arg(long, default_value = "127.0.0.1:8080")]
        http: SocketAddr,
        #[arg(long, default_value = "127.0.0.1:9901")]
        admin: SocketAddr,
    },
    /// An upstream that answers with the request it saw (JSON).
    Echo {
        #[arg(long)]
        listen: SocketAddr,
        /// Reported in every answer as `server`, to tell targets apart.
        #[arg(long, default_value = "echo")]
        name: String,
    },
    /// Read a password on stdin, print an argon2id hash for the users file.
    HashPassword,
    /// Print a new random 32-byte key, base64url (session keys, admin tokens).
    GenKey {
        /// Print a P-256 private key (PKCS#8 PEM) for `[identity] assertion_key_file` instead.
        #[arg(long)]
        assertion: bool,
    },
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let command = cli.command.unwrap_or(Command::Run {
        config: PathBuf::from("gateway.toml"),
    });
    match command {
        Command::GenKey { assertion: true } => match crate::tokens::assertion::generate_pem() {
            Ok(pem) => {
                print!("{pem}");
                ExitCode::SUCCESS
            }
            Err(e) => fail(&e),
        },
        Command::GenKey { assertion: false } => match crate::session::keys::generate_key() {
            Ok(k) => {
                println!("{k}");
                ExitCode::SUCCESS
            }
            Err(_) => fail("no randomness available"),
        },
        Command::HashPassword => hash_password(),
        Command::Check { config } => match crate::config::load(&config) {
            Ok(c) => {
                println!(
                    "{}: ok ({} routes, {} upstreams, {} users)",
                    config.display(),
                    c.routes.len(),
                    c.upstreams.len(),
                    c.auth.users.len()
                );
                ExitCode::SUCCESS
            }
            Err(e) => fail(&e.to_string()),
        },
        Command::Run { config } => {
            let cfg = match crate::config::load(&config) {
                Ok(c) => c,
                Err(e) => return fail(&e.to_string()),
            };
            logging::init(cli.log_format);
            serve(cfg)
        }
        Command::Echo { listen, name } => {
            logging::init(cli.log_format);
            match crate::tools::echo::run(listen, name) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => fail(&format!("echo: {e}")),
            }
        }
        Command::Demo { https, http, admin } => {
            logging::init(cli.log_format);
            let demo = match crate::tools::demo::build(&crate::tools::demo::DemoOptions {
                https,
                http,
                admin,
            }) {
                Ok(d) => d,
                Err(e) => return fail(&format!("demo: {e}")),
            };
            let port = https.port();
            println!("portcullis demo");
            println!("  open      https://localhost:{port}/   (self-signed certificate: accept it in the browser)");
            println!("  user      demo");
            println!("  password  {}", demo.password);
            println!("  upstream  echo at http://{}", demo.echo);
            println!("  admin     http://{admin}/metrics  /readyz  /healthz");
            serve(demo.config)
        }
    }
}

fn serve(cfg: crate::config::Config) -> ExitCode {
    let shared = match crate::server::build_shared(cfg) {
        Ok(s) => s,
        Err(e) => return fail(&e.to_string()),
    };
    match crate::server::serve(shared) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&e.to_string()),
    }
}

fn hash_password() -> ExitCode {
    let mut line = String::new();
    if std::io::stdin().lock().read_line(&mut line).is_err() {
        return fail("cannot read a password from stdin");
    }
    let pw = line.trim_end_matches(['\r', '\n']);
    if pw.is_empty() {
        return fail("empty password");
    }
    match crate::auth::users::hash_password(pw) {
        Ok(h) => {
            println!("{h}");
            ExitCode::SUCCESS
        }
        Err(e) => fail(&e),
    }
}

fn fail(msg: &str) -> ExitCode {
    eprintln!("portcullis: {msg}");
    ExitCode::FAILURE
}
