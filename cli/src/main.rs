//! `sentinela`: the operator's command line. It talks to `sentinela-api` over HTTP with an API
//! key, so it needs neither the database nor OpenCV and runs on any operator's machine; commands
//! that need the database itself (migrations, seeding, running a periodic job now) stay on the
//! server's binaries, and this tool says which.
//!
//! The API's address comes from `--url`, `SENTINELA_URL`, the config file's `url`, or
//! `http://127.0.0.1:8000`; the key from `SENTINELA_API_KEY` or the config file's `api_key`
//! (never from a flag: flags end up in shell history and `ps`). The config file is `--config`,
//! `SENTINELA_CONFIG`, or `~/.config/sentinela/cli.toml`:
//!
//! ```toml
//! url = "https://sentinela.example.gov.br"
//! api_key = "snt_…"
//! ```

mod client;
mod output;

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Parser, Subcommand, ValueEnum};
use serde_json::{Value, json};

use client::Client;

/// The operator's command line for Sentinela, over its HTTP API.
#[derive(Debug, Parser)]
#[command(name = "sentinela", version, about, long_about = None)]
struct Cli {
    /// The API's address (else SENTINELA_URL, the config file's `url`, http://127.0.0.1:8000).
    #[arg(long, global = true)]
    url: Option<String>,
    /// The config file (else SENTINELA_CONFIG, ~/.config/sentinela/cli.toml).
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// Print the API's JSON instead of tables.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Vehicle searches.
    #[command(subcommand)]
    Search(SearchCommand),
    /// API keys (admin).
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Cities.
    #[command(subcommand)]
    Cities(CitiesCommand),
    /// Cameras.
    #[command(subcommand)]
    Cameras(CamerasCommand),
    /// The job queue (admin).
    #[command(subcommand)]
    Queue(QueueCommand),
    /// Recording retention (admin): `--dry-run` lists what it would delete now.
    Retention {
        /// List, delete nothing (the only mode here: retention itself runs on the scheduler).
        #[arg(long)]
        dry_run: bool,
        /// Only this city.
        #[arg(long)]
        city: Option<i64>,
        /// Recordings listed at most.
        #[arg(long, default_value_t = 1000)]
        limit: u32,
    },
}

#[derive(Debug, Subcommand)]
enum SearchCommand {
    /// Start a search; with --wait, show its progress and then where the vehicle went.
    Create {
        /// City.
        #[arg(long)]
        city: i64,
        /// Plate, wildcards `*` and `?` allowed.
        #[arg(long)]
        plate: Option<String>,
        /// Colour (English or Portuguese).
        #[arg(long)]
        color: Option<String>,
        /// Vehicle type (English or Portuguese).
        #[arg(long = "type")]
        vehicle_type: Option<String>,
        /// Window start, RFC 3339 with an offset (2026-11-29T08:00:00-03:00).
        #[arg(long)]
        from: String,
        /// Window end, RFC 3339 with an offset.
        #[arg(long)]
        to: String,
        /// Only this camera (repeat for several).
        #[arg(long = "camera")]
        cameras: Vec<i64>,
        /// Wait for it to end, showing its progress; exit 0 only if it completed.
        #[arg(long)]
        wait: bool,
        /// An Idempotency-Key, so running the command again does not start a second search.
        #[arg(long)]
        idempotency_key: Option<String>,
    },
    /// A search and its progress.
    Show {
        /// Search id.
        id: i64,
    },
    /// Searches, newest first.
    List {
        /// Only in this status.
        #[arg(long)]
        status: Option<String>,
        /// Only plates containing this.
        #[arg(long)]
        plate: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 20)]
        limit: u32,
    },
    /// Where the vehicle went: the visits in order.
    Trajectory {
        /// Search id.
        id: i64,
    },
    /// The trajectory as CSV or GeoJSON.
    Export {
        /// Search id.
        id: i64,
        /// The format.
        #[arg(long, value_enum, default_value_t = Format::Csv)]
        format: Format,
        /// Write here instead of standard output.
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
    /// Cancel a search that has not ended.
    Cancel {
        /// Search id.
        id: i64,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Format {
    Csv,
    Geojson,
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// Create a key; its secret is printed once.
    Create {
        /// A label.
        #[arg(long)]
        name: String,
        /// The user it acts for.
        #[arg(long)]
        user: String,
        /// The city it is scoped to; omit for an admin key.
        #[arg(long)]
        city: Option<i64>,
        /// When it stops working (RFC 3339).
        #[arg(long)]
        expires: Option<String>,
    },
    /// Every key (never their secrets).
    List,
    /// Revoke a key.
    Revoke {
        /// Key id.
        id: i64,
    },
}

#[derive(Debug, Subcommand)]
enum CitiesCommand {
    /// The cities the key sees.
    List,
}

#[derive(Debug, Subcommand)]
enum CamerasCommand {
    /// Add a camera (admin).
    Add {
        /// City.
        #[arg(long)]
        city: i64,
        /// Name, unique in the city.
        #[arg(long)]
        name: String,
        /// Where it points.
        #[arg(long)]
        location: Option<String>,
        /// Latitude.
        #[arg(long, allow_negative_numbers = true)]
        lat: Option<f64>,
        /// Longitude.
        #[arg(long, allow_negative_numbers = true)]
        lon: Option<f64>,
        /// Its MediaMTX path (recordings folder).
        #[arg(long)]
        path: Option<String>,
    },
    /// Cameras the key sees.
    List {
        /// Only this city's.
        #[arg(long)]
        city: Option<i64>,
    },
}

#[derive(Debug, Subcommand)]
enum QueueCommand {
    /// Jobs by state per queue, unfinished tasks per city, the oldest one.
    Stats,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(code) => code,
        Err(e) => {
            // One line a person can act on.
            eprintln!("sentinela: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let client = Client::from_environment(cli.url.as_deref(), cli.config.as_deref())?;
    let json_out = cli.json;
    let print = |value: &Value, table: &dyn Fn(&Value) -> String| {
        if json_out {
            println!(
                "{}",
                serde_json::to_string_pretty(value).unwrap_or_default()
            );
        } else {
            print!("{}", table(value));
        }
    };
    match cli.command {
        Command::Search(command) => return search(&client, command, json_out).await,
        Command::Keys(KeysCommand::Create {
            name,
            user,
            city,
            expires,
        }) => {
            let mut body = json!({"name": name, "user_id": user});
            if let Some(city) = city {
                body["city_id"] = json!(city);
            }
            if let Some(expires) = expires {
                body["expires_at"] = json!(expires);
            }
            let created = client.send("POST", "/api/v1/api-keys", Some(body)).await?;
            print(&created, &output::created_key);
        }
        Command::Keys(KeysCommand::List) => {
            let keys = client.all_pages("/api/v1/api-keys?limit=1000").await?;
            print(&Value::Array(keys), &output::keys);
        }
        Command::Keys(KeysCommand::Revoke { id }) => {
            let key = client
                .send("POST", &format!("/api/v1/api-keys/{id}/revoke"), None)
                .await?;
            print(&key, &output::keys_one);
        }
        Command::Cities(CitiesCommand::List) => {
            let cities = client.send("GET", "/api/v1/cities", None).await?;
            print(&cities, &output::cities);
        }
        Command::Cameras(CamerasCommand::Add {
            city,
            name,
            location,
            lat,
            lon,
            path,
        }) => {
            let body = json!({
                "city_id": city,
                "name": name,
                "location": location,
                "latitude": lat,
                "longitude": lon,
                "mediamtx_path": path,
            });
            let camera = client.send("POST", "/api/v1/cameras", Some(body)).await?;
            print(&Value::Array(vec![camera]), &output::cameras);
        }
        Command::Cameras(CamerasCommand::List { city }) => {
            let query = city.map_or(String::new(), |c| format!("&city_id={c}"));
            let cameras = client
                .all_pages(&format!("/api/v1/cameras?limit=1000{query}"))
                .await?;
            print(&Value::Array(cameras), &output::cameras);
        }
        Command::Queue(QueueCommand::Stats) => {
            let stats = client.send("GET", "/api/v1/admin/queue", None).await?;
            print(&stats, &output::queue);
        }
        Command::Retention {
            dry_run,
            city,
            limit,
        } => {
            if !dry_run {
                bail!(
                    "retention runs on the scheduler's schedule; `sentinela retention --dry-run` lists what it would delete, and `sentinela-scheduler run-once retention` (on a server, with DATABASE_URL) runs it now"
                );
            }
            let query = city.map_or(String::new(), |c| format!("&city_id={c}"));
            let preview = client
                .send(
                    "GET",
                    &format!("/api/v1/admin/retention?limit={limit}{query}"),
                    None,
                )
                .await?;
            print(&preview, &output::retention);
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn search(
    client: &Client,
    command: SearchCommand,
    json_out: bool,
) -> anyhow::Result<ExitCode> {
    match command {
        SearchCommand::Create {
            city,
            plate,
            color,
            vehicle_type,
            from,
            to,
            cameras,
            wait,
            idempotency_key,
        } => {
            let mut body = json!({
                "city_id": city,
                "plate": plate,
                "color": color,
                "vehicle_type": vehicle_type,
                "start_date": from,
                "end_date": to,
            });
            if !cameras.is_empty() {
                body["camera_ids"] = json!(cameras);
            }
            let created = client
                .send_with(
                    "POST",
                    "/api/v1/searches",
                    Some(body),
                    idempotency_key.as_deref().map(|k| ("Idempotency-Key", k)),
                )
                .await?;
            let id = created["id"]
                .as_i64()
                .context("the API answered without an id")?;
            if !wait {
                emit(json_out, &created, output::search);
                return Ok(ExitCode::SUCCESS);
            }
            eprintln!("search {id} started");
            let done = wait_for(client, id).await?;
            let trajectory = trajectory(client, id).await?;
            let timezone = city_timezone(client, city).await;
            if json_out {
                println!(
                    "{}",
                    serde_json::to_string_pretty(
                        &json!({"search": done, "trajectory": trajectory})
                    )?
                );
            } else {
                print!("{}", output::search(&done));
                print!("{}", output::trajectory(&trajectory, timezone));
            }
            let status = done["status"].as_str().unwrap_or_default();
            if status == "completed" || status == "completed_with_errors" {
                Ok(ExitCode::SUCCESS)
            } else {
                eprintln!("sentinela: search {id} ended {status}");
                Ok(ExitCode::FAILURE)
            }
        }
        SearchCommand::Show { id } => {
            let search = client
                .send("GET", &format!("/api/v1/searches/{id}"), None)
                .await?;
            emit(json_out, &search, output::search);
            Ok(ExitCode::SUCCESS)
        }
        SearchCommand::List {
            status,
            plate,
            limit,
        } => {
            let mut query = format!("limit={}", limit.clamp(1, 200));
            if let Some(status) = status {
                query.push_str(&format!("&status={status}"));
            }
            if let Some(plate) = plate {
                query.push_str(&format!("&plate={plate}"));
            }
            let page = client
                .send("GET", &format!("/api/v1/searches?{query}"), None)
                .await?;
            emit(json_out, &page, output::searches);
            Ok(ExitCode::SUCCESS)
        }
        SearchCommand::Trajectory { id } => {
            let trajectory = trajectory(client, id).await?;
            let search = client
                .send("GET", &format!("/api/v1/searches/{id}"), None)
                .await?;
            let timezone = city_timezone(client, search["city_id"].as_i64().unwrap_or(0)).await;
            if json_out {
                println!("{}", serde_json::to_string_pretty(&trajectory)?);
            } else {
                print!("{}", output::trajectory(&trajectory, timezone));
            }
            Ok(ExitCode::SUCCESS)
        }
        SearchCommand::Export { id, format, output } => {
            let path = match format {
                Format::Csv => format!("/api/v1/searches/{id}/export.csv"),
                Format::Geojson => format!("/api/v1/searches/{id}/export.geojson"),
            };
            let bytes = client.bytes(&path).await?;
            match output {
                Some(file) => {
                    std::fs::write(&file, &bytes)
                        .with_context(|| format!("cannot write {}", file.display()))?;
                    eprintln!("wrote {} bytes to {}", bytes.len(), file.display());
                }
                None => std::io::stdout().write_all(&bytes)?,
            }
            Ok(ExitCode::SUCCESS)
        }
        SearchCommand::Cancel { id } => {
            let search = client
                .send("POST", &format!("/api/v1/searches/{id}/cancel"), None)
                .await?;
            emit(json_out, &search, output::search);
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn emit(json_out: bool, value: &Value, table: fn(&Value) -> String) {
    if json_out {
        println!(
            "{}",
            serde_json::to_string_pretty(value).unwrap_or_default()
        );
    } else {
        print!("{}", table(value));
    }
}

/// The whole trajectory: every page of points (visits come whole with each page).
async fn trajectory(client: &Client, id: i64) -> anyhow::Result<Value> {
    let mut first = client
        .send("GET", &format!("/api/v1/searches/{id}/trajectory"), None)
        .await?;
    let mut cursor = first["next_cursor"].as_str().map(str::to_owned);
    while let Some(next) = cursor {
        let page = client
            .send(
                "GET",
                &format!("/api/v1/searches/{id}/trajectory?cursor={next}"),
                None,
            )
            .await?;
        if let (Some(all), Some(more)) = (first["points"].as_array_mut(), page["points"].as_array())
        {
            all.extend(more.iter().cloned());
        }
        cursor = page["next_cursor"].as_str().map(str::to_owned);
    }
    if let Some(doc) = first.as_object_mut() {
        doc.remove("next_cursor");
    }
    Ok(first)
}

async fn city_timezone(client: &Client, city: i64) -> Option<chrono_tz::Tz> {
    let city = client
        .send("GET", &format!("/api/v1/cities/{city}"), None)
        .await
        .ok()?;
    city["timezone"].as_str()?.parse().ok()
}

/// Polls the search each second until it ends, drawing its progress on standard error (one
/// line redrawn on a terminal, a line per change otherwise).
async fn wait_for(client: &Client, id: i64) -> anyhow::Result<Value> {
    use std::io::IsTerminal;
    let terminal = std::io::stderr().is_terminal();
    let started = Instant::now();
    let mut last = String::new();
    loop {
        let search = client
            .send("GET", &format!("/api/v1/searches/{id}"), None)
            .await?;
        let line = output::progress(&search, started.elapsed());
        if line != last {
            if terminal {
                eprint!("\r\x1b[2K{line}");
            } else {
                eprintln!("{line}");
            }
            last = line;
        }
        let status = search["status"].as_str().unwrap_or_default();
        if status != "pending" && status != "processing" {
            if terminal {
                eprintln!();
            }
            return Ok(search);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
