//! The `harness` binary: parses the command line, calls the library, maps errors to exit codes.

use std::io::IsTerminal;

use clap::Parser;
use harness::cli::{Cli, Command, HealthArgs, ImageCommand, RunArgs};
use harness::error::{Context, Error, Result};
use harness::{exit_code, paths};

fn main() {
    std::panic::set_hook(Box::new(|info| {
        harness::process::kill_all();
        eprintln!("harness: internal error: {info} (please report this)");
        std::process::exit(exit_code::INFRASTRUCTURE);
    }));
    tracing_subscriber::fmt()
        .with_env_filter(
            // By default only errors, and the board flow's one line per phase (flash figures).
            tracing_subscriber::EnvFilter::try_from_env("HARNESS_LOG").unwrap_or_else(|_| {
                tracing_subscriber::EnvFilter::new("error,harness::board=info")
            }),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let cli = Cli::parse();
    let code = match dispatch(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("harness: error: {e}");
            e.exit_code()
        }
    };
    std::process::exit(code);
}

fn dispatch(cli: Cli) -> Result<i32> {
    match cli.command {
        Command::Run(args) => run(args),
        Command::Machines => {
            let root = paths::project_root()?;
            for m in harness::config::machine::list(&root)? {
                println!("{:<20} {}", m.name, m.description);
            }
            Ok(exit_code::SUCCESS)
        }
        Command::Suites => {
            let root = paths::project_root()?;
            for s in harness::config::suite::list(&root)? {
                println!(
                    "suite/{:<14} {} ({} tests)",
                    s.name,
                    s.file.description,
                    s.tests.len()
                );
            }
            Ok(exit_code::SUCCESS)
        }
        Command::Image(cmd) => image(cmd),
        Command::Rigs => rigs(),
        Command::Health(args) => health(args),
        Command::Flash {
            image,
            to,
            no_verify,
        } => flash(image, to, !no_verify),
        Command::Report(cmd) => report(cmd),
        Command::PortCheck(args) => port_check(args),
    }
}

/// `harness port-check`: the porting report, its verdict on stdout.
fn port_check(args: harness::cli::PortCheckArgs) -> Result<i32> {
    harness::interrupt::install();
    let root = paths::project_root()?;
    let opts = harness::port::PortOptions {
        machine: args.machine,
        image: args.image,
        rig: args.rig,
        suites: args.suites,
        filter: args.filter,
        static_only: args.static_only,
        out: args.out,
        run: harness::runner::RunOptions {
            vars: args.vars,
            accel: args
                .accel
                .as_deref()
                .and_then(harness::qemu::accel::Accel::parse),
            retries: args.retries,
            ..Default::default()
        },
    };
    let live = harness::live::Live::new(std::io::stderr().is_terminal());
    let summary = harness::port::check(&root, &opts, &live);
    live.finish();
    let summary = summary?;
    println!("{}", summary.report.verdict.line);
    println!("report: {}", summary.dir.join("porting.html").display());
    Ok(summary.exit_code)
}

fn rigs() -> Result<i32> {
    let root = paths::project_root()?;
    let mut missing = 0;
    for rig in harness::board::rig::list(&root)? {
        let mut state = match rig.check() {
            Ok(()) => "ready".to_string(),
            Err(e) => {
                missing += 1;
                format!("not ready: {e}")
            }
        };
        if let Some(status) = harness::rotation::status(&rig.name)? {
            state.push_str(&format!("; {}", status.describe()));
        }
        if let Some(held) = harness::lease::holder(&format!("rig-{}", rig.name))? {
            state.push_str(&format!("; leased by {} ({})", held.holder, held.what));
        }
        println!(
            "{:<12} {:<18} {} [{}] - {state}",
            rig.name,
            rig.machine,
            rig.description,
            rig.tags.join(",")
        );
    }
    Ok(if missing == 0 {
        exit_code::SUCCESS
    } else {
        exit_code::INFRASTRUCTURE
    })
}

/// `harness health`: suite/smoke on each rig's known-good image; the rig goes out of
/// rotation when it fails and comes back when it passes.
fn health(args: HealthArgs) -> Result<i32> {
    harness::interrupt::install();
    let root = paths::project_root()?;
    let all = harness::board::rig::list(&root)?;
    let mut picked: Vec<harness::board::rig::Rig> = Vec::new();
    for name in &args.rigs {
        picked.push(harness::board::rig::load(&root, name)?);
    }
    for pool in &args.pools {
        let tag = pool.strip_prefix("tag=").ok_or_else(|| {
            Error::input(format!(
                "--rigs {pool}: expected `tag=NAME` (e.g. --rigs tag=pi4)"
            ))
        })?;
        picked.extend(
            all.iter()
                .filter(|r| r.tags.iter().any(|t| t == tag))
                .cloned(),
        );
    }
    if args.rigs.is_empty() && args.pools.is_empty() {
        picked = all;
    }
    if picked.is_empty() {
        return Err(Error::input("no rig to check (see `harness rigs`)"));
    }
    let live = harness::live::Live::new(std::io::stderr().is_terminal());
    let mut unhealthy = 0;
    for rig in picked {
        let out = args
            .out
            .as_ref()
            .map(|o| o.join(&rig.name))
            .unwrap_or_else(|| {
                root.join("reports").join(format!(
                    "health-{}-{}",
                    harness::runner::plan::utc_stamp(),
                    rig.name
                ))
            });
        let opts = harness::runner::RunOptions {
            rigs: vec![rig.name.clone()],
            suites: vec!["suite/smoke".into()],
            image: rig.health_image.as_ref().map(|p| root.join(p)),
            out: Some(out.clone()),
            retries: 0,
            lease_wait: std::time::Duration::from_secs(1800),
            ..Default::default()
        };
        let verdict = match harness::runner::run(&root, &opts, &live) {
            Ok(s) if s.interrupted => return Ok(exit_code::INTERRUPTED),
            Ok(s) if s.exit_code() == exit_code::SUCCESS => Ok(()),
            Ok(s) => Err(first_problem(&s.dir)
                .unwrap_or_else(|| harness::report::terminal::summary(&s.counts, s.duration))),
            Err(e @ Error::Input(_)) => return Err(e),
            Err(e) => Err(e.to_string()),
        };
        let run = out.display().to_string();
        match verdict {
            Ok(()) => {
                harness::rotation::mark_in(&rig.name, &run)?;
                println!("{:<12} healthy: in rotation ({run})", rig.name);
            }
            Err(why) => {
                unhealthy += 1;
                let why = format!("health check failed: {why}");
                harness::rotation::mark_out(&rig.name, &why, &run)?;
                println!("{:<12} out of rotation: {why} ({run})", rig.name);
            }
        }
    }
    live.finish();
    Ok(if unhealthy == 0 {
        exit_code::SUCCESS
    } else {
        exit_code::INFRASTRUCTURE
    })
}

/// The first failed or errored test of a run, `suite/test: message`, from its summary.json.
fn first_problem(dir: &std::path::Path) -> Option<String> {
    let text = std::fs::read_to_string(dir.join("summary.json")).ok()?;
    let doc: serde_json::Value = serde_json::from_str(&text).ok()?;
    let broken = doc["targets"].as_array().and_then(|ts| {
        ts.iter()
            .find(|t| t["state"] == "broken")
            .and_then(|t| t["detail"].as_str().map(String::from))
    });
    broken.or_else(|| {
        doc["tests"].as_array()?.iter().find_map(|t| {
            let o = t["outcome"].as_str()?;
            (o == "failed" || o == "error").then(|| {
                format!(
                    "{}/{}: {}",
                    t["suite"].as_str().unwrap_or(""),
                    t["name"].as_str().unwrap_or(""),
                    t["message"].as_str().unwrap_or("")
                )
            })
        })
    })
}

fn flash(image: std::path::PathBuf, to: std::path::PathBuf, verify: bool) -> Result<i32> {
    use harness::flash::{FlashOptions, Phase};
    harness::interrupt::install();
    let mut opts = FlashOptions::new(&image, &to);
    opts.verify = verify;
    opts.cancel = Some(harness::interrupt::requested);
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{msg:8} [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    let report = harness::flash::flash(&opts, &|p| {
        bar.set_message(match p.phase {
            Phase::Write => "write",
            Phase::Verify => "verify",
        });
        if let Some(total) = p.total {
            bar.set_length(total);
        }
        bar.set_position(p.done);
    })?;
    bar.finish_and_clear();
    eprintln!(
        "wrote {} of {} bytes in {} ranges ({:.1}s){}{}",
        report.written,
        report.image_size,
        report.ranges,
        report.write_time.as_secs_f64(),
        report
            .verify_time
            .map(|t| format!(", verified in {:.1}s", t.as_secs_f64()))
            .unwrap_or_default(),
        report
            .bmap
            .map(|b| format!(", using {}", b.display()))
            .unwrap_or_default()
    );
    Ok(exit_code::SUCCESS)
}

fn run(args: RunArgs) -> Result<i32> {
    harness::interrupt::install();
    let root = paths::project_root()?;
    let opts = harness::runner::RunOptions {
        machines: args.machines,
        parallel: usize::from(args.parallel),
        rigs: args.rigs,
        pools: args.pools,
        each: args.each,
        suites: args.suites,
        image: args.image,
        out: args.out,
        junit: args.junit,
        filter: args.filter,
        keep_going: args.keep_going,
        accel: args
            .accel
            .as_deref()
            .and_then(harness::qemu::accel::Accel::parse),
        keep: args.keep,
        vars: args.vars,
        retries: args.retries,
        rerun_failures: args.rerun_failures,
        lease_wait: std::time::Duration::from_secs(args.lease_wait),
        follow: args.follow,
        no_snapshot: args.no_snapshot,
    };
    let live = harness::live::Live::new(std::io::stderr().is_terminal());
    let summary = harness::runner::run(&root, &opts, &live);
    live.finish();
    let summary = summary?;
    eprintln!(
        "{}{}",
        harness::report::terminal::summary(&summary.counts, summary.duration),
        if summary.interrupted {
            " (interrupted)"
        } else {
            ""
        }
    );
    eprintln!("report: {}", summary.junit.display());
    Ok(summary.exit_code())
}

fn image(cmd: ImageCommand) -> Result<i32> {
    use harness::image::configure::{configure, Change};
    match cmd {
        ImageCommand::Build { machine } => {
            let root = paths::project_root()?;
            let m = harness::config::machine::load(&root, &machine)?;
            let recipe = m.reference_image.ok_or_else(|| {
                Error::input(format!("machine `{machine}` has no reference image recipe"))
            })?;
            let tty = std::io::stderr().is_terminal();
            let build = harness::reference::build(&root, &recipe, &mut |line| {
                if tty || line.starts_with("==>") {
                    eprintln!("{line}");
                }
            })?;
            println!("{}", build.image_path().display());
            Ok(exit_code::SUCCESS)
        }
        ImageCommand::Inspect { image, json } => {
            let inspection = harness::image::inspect::inspect(&image)?;
            if json {
                let text = serde_json::to_string_pretty(&inspection)
                    .infra_ctx(|| "cannot render JSON".into())?;
                println!("{text}");
            } else {
                print!("{inspection}");
            }
            Ok(exit_code::SUCCESS)
        }
        ImageCommand::Configure {
            image,
            set,
            remove,
            config,
        } => {
            let mut changes = Vec::new();
            if let Some(path) = config {
                let bytes =
                    std::fs::read(&path).input_ctx(|| format!("cannot read {}", path.display()))?;
                let parsed = harness::image::config_json::ConfigJson::parse(
                    &bytes,
                    &path.display().to_string(),
                )?;
                changes.push(Change::ReplaceConfig(parsed));
            }
            for s in &set {
                let (k, v) = harness::image::config_json::parse_set_arg(s)?;
                changes.push(Change::Set(k, v));
            }
            changes.extend(remove.into_iter().map(Change::Remove));
            if changes.is_empty() {
                return Err(Error::input(
                    "nothing to change: give --set, --remove or --config",
                ));
            }
            configure(&image, &changes)?;
            Ok(exit_code::SUCCESS)
        }
    }
}

fn report(cmd: harness::cli::ReportCommand) -> Result<i32> {
    match cmd {
        harness::cli::ReportCommand::Compare { a, b } => {
            let comparison = harness::report::compare::compare_paths(&a, &b)?;
            print!("{}", comparison.render());
            Ok(comparison.exit_code())
        }
        harness::cli::ReportCommand::Render { dir } => {
            let mut reporter = harness::report::Reporter::from_journal(&dir)?;
            reporter.render()?;
            let counts = harness::report::Counts::of(reporter.results());
            println!(
                "{}: {} passed, {} failed, {} skipped, {} errors, {} flaky{}",
                dir.display(),
                counts.passed,
                counts.failed,
                counts.skipped,
                counts.errors,
                counts.flaky,
                if reporter.was_interrupted() {
                    " (interrupted)"
                } else {
                    ""
                }
            );
            println!("report: {}", reporter.junit_path().display());
            Ok(exit_code::SUCCESS)
        }
    }
}
