//! Stand-in for `harness flash IMAGE --to TARGET` until the CLI wires it: used by
//! `scripts/bench-flash.sh`. Usage: `flash IMAGE TARGET [--no-verify] [--no-bmap]`.

use std::process::ExitCode;

use harness::flash::{flash, BmapChoice, FlashOptions, Phase, Progress};
use indicatif::{ProgressBar, ProgressStyle};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let paths: Vec<&String> = args.iter().filter(|a| !a.starts_with("--")).collect();
    let [image, target] = paths[..] else {
        eprintln!("usage: flash IMAGE TARGET [--no-verify] [--no-bmap]");
        return ExitCode::from(2);
    };
    let mut opts = FlashOptions::new(image, target);
    opts.verify = !args.iter().any(|a| a == "--no-verify");
    if args.iter().any(|a| a == "--no-bmap") {
        opts.bmap = BmapChoice::Ignore;
    }
    let bar = ProgressBar::hidden();
    bar.set_style(
        ProgressStyle::with_template(
            "{msg:7} {bar:30} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        )
        .expect("valid template"),
    );
    if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
    }
    let on_progress = |p: Progress| {
        bar.set_message(match p.phase {
            Phase::Write => "write",
            Phase::Verify => "verify",
        });
        if let Some(t) = p.total {
            bar.set_length(t);
        }
        bar.set_position(p.done);
    };
    match flash(&opts, &on_progress) {
        Ok(r) => {
            bar.finish_and_clear();
            eprintln!(
                "wrote {} of {} bytes in {} ranges (bmap: {}, O_DIRECT: {}) in {:.2} s, verified in {:.2} s",
                r.written,
                r.image_size,
                r.ranges,
                r.bmap.as_ref().map_or("none".into(), |p| p.display().to_string()),
                r.direct_io,
                r.write_time.as_secs_f64(),
                r.verify_time.map_or(0.0, |t| t.as_secs_f64()),
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            bar.abandon();
            eprintln!("error: {e}");
            ExitCode::from(e.exit_code() as u8)
        }
    }
}
