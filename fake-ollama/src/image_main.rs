//! `herd-fake-image`: one simulated image server (sd-server, A1111, ComfyUI, an OpenAI-style
//! server or ollama-herd's node image server) answering real PNGs; prints `listening on URL` and
//! serves until SIGINT or SIGTERM.

use std::io::Write as _;
use std::net::{IpAddr, SocketAddr};

use clap::Parser;
use herd_fake_ollama::image::{ImageFake, ImageFakeConfig, ImageKind};

#[derive(Parser, Debug)]
#[command(name = "herd-fake-image", about = "A simulated image generation server answering real PNGs")]
struct Args {
    /// Which server to be.
    #[arg(long, value_enum, default_value_t = ImageKind::Sdcpp)]
    kind: ImageKind,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    host: IpAddr,
    /// Port (0: any free one).
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// Models offered, comma-separated (sd-server offers the first only).
    #[arg(long, value_delimiter = ',', default_value = "sd-turbo")]
    models: Vec<String>,
    /// Seconds per image at 20 steps and one megapixel.
    #[arg(long, default_value_t = 2.0)]
    secs_per_image: f64,
    /// Seconds to switch models (A1111, ComfyUI).
    #[arg(long, default_value_t = 5.0)]
    load_secs: f64,
    /// Jobs run at once.
    #[arg(long, default_value_t = 1)]
    concurrency: usize,
    /// Jobs queued beyond those (sd-server answers 429 past it).
    #[arg(long, default_value_t = 8)]
    queue: usize,
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let args = Args::parse();
    let listener = tokio::net::TcpListener::bind(SocketAddr::new(args.host, args.port)).await?;
    let fake = ImageFake::start(
        listener,
        ImageFakeConfig {
            kind: args.kind,
            models: args.models,
            secs_per_image: args.secs_per_image,
            load_secs: args.load_secs,
            concurrency: args.concurrency,
            queue: args.queue,
        },
    )?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "listening on {}", fake.url())?;
    out.flush()?;
    drop(out);
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    fake.shutdown();
    Ok(())
}
