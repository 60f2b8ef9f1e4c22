//! The persistence scenario's client (PROTOCOL §12) against whichever
//! ProfileService serves `proto/store/v1` on `$NATS_URL`: one command, one
//! JSON line on stdout, exit status 0 (also on a typed error, printed as
//! `{"error": "<CODE>", ...}`).
//!
//! - `kv-get <key>`: SaveProfile's bucket, typed;
//! - `kv-put <key> <id> <name>`: puts Profile{id, name, version: 7};
//! - `obj-get <name>`: GenerateReport's object, digest checked;
//! - `upload <size> <seed>`: pattern(seed) from an async reader, chunked;
//! - `download <size> <seed> <fail_after> <path>`: chunked, into a file.

use nats_micro_runtime::chunked::Transfer;
use nats_micro_tests::project::store::v1::profile_service_nats::{ProfileServiceClient, ProfileServiceError};
use nats_micro_tests::project::store::v1::{DownloadRequest, Profile};
use nats_micro_tests::store::PatternReader;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// VmHWM of this process, in KiB.
fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn hex(digest: &[u8]) -> String {
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

fn usage() -> ! {
    eprintln!(
        "usage: store_client kv-get <key> | kv-put <key> <id> <name> | obj-get <name> | upload <size> <seed> | download <size> <seed> <fail_after> <path>"
    );
    std::process::exit(2)
}

fn number<T: std::str::FromStr>(text: Option<&String>) -> T {
    text.and_then(|t| t.parse().ok()).unwrap_or_else(|| usage())
}

async fn run(client: &ProfileServiceClient, args: &[String]) -> Result<Value, ProfileServiceError> {
    match args.first().map(String::as_str) {
        Some("kv-get") => {
            let key = args.get(1).unwrap_or_else(|| usage());
            let profiles = client.save_profile_kv().await?;
            Ok(match profiles.get(key).await? {
                Some(entry) => json!({
                    "found": true,
                    "revision": entry.revision,
                    "id": entry.value.id,
                    "name": entry.value.name,
                    "version": entry.value.version,
                }),
                None => json!({"found": false}),
            })
        }
        Some("kv-put") => {
            let (Some(key), Some(id), Some(name)) = (args.get(1), args.get(2), args.get(3)) else { usage() };
            let profiles = client.save_profile_kv().await?;
            let profile = Profile { id: id.clone(), name: name.clone(), version: 7, ..Default::default() };
            Ok(json!({"revision": profiles.put(key, &profile).await?}))
        }
        Some("obj-get") => {
            let name = args.get(1).unwrap_or_else(|| usage());
            let reports = client.generate_report_objects().await?;
            match reports.get(name).await? {
                Some(report) => {
                    Ok(json!({"id": report.id, "size": report.body.len(), "sha256": hex(&Sha256::digest(&report.body))}))
                }
                None => Err(ProfileServiceError::not_found(format!("no object {name:?}"))),
            }
        }
        Some("upload") => {
            let (size, seed): (u64, u32) = (number(args.get(1)), number(args.get(2)));
            let result = client.upload_chunked().send_reader(PatternReader::new(size, seed)).await?;
            Ok(json!({"size": result.size, "sha256": result.sha256, "peak_rss_kib": peak_rss_kib()}))
        }
        Some("download") => {
            let (size, seed, fail_after): (u64, u32, u64) = (number(args.get(1)), number(args.get(2)), number(args.get(3)));
            let path = args.get(4).unwrap_or_else(|| usage());
            let request = DownloadRequest { size, seed, fail_after };
            match client.download_chunked(request).receive_file(path).await {
                Ok(Transfer { size, sha256, .. }) => {
                    Ok(json!({"size": size, "sha256": hex(&sha256), "peak_rss_kib": peak_rss_kib()}))
                }
                Err(err) => Ok(json!({
                    "error": err.code().as_str(),
                    "message": err.message(),
                    "file_exists": std::path::Path::new(path).exists(),
                })),
            }
        }
        _ => usage(),
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let url = std::env::var("NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into());
    let client = ProfileServiceClient::new(async_nats::connect(url).await?);
    let line = match run(&client, &args).await {
        Ok(line) => line,
        Err(err) => json!({"error": err.code().as_str(), "message": err.message()}),
    };
    println!("{line}");
    Ok(())
}
