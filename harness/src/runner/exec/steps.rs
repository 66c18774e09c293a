//! Runs one step of a test against the device.

use std::collections::BTreeMap;
use std::time::Duration;

use regex::Regex;

use super::dut::Dut;
use crate::config::suite::{ConfigureOn, ConfigureStep, ConsoleStep, CopyStep, SshStep, Step};
use crate::error::{Context, Error, Result};
use crate::image::configure::Change;

/// Runs `step`; no wait inside it lasts past `budget` (what is left of the test's timeout).
pub fn run(
    dut: &mut Dut,
    step: &Step,
    suite_dir: &std::path::Path,
    budget: Duration,
) -> Result<()> {
    let bound = |t: u64| Duration::from_secs(t).min(budget);
    match step {
        Step::Ssh(s) => ssh(dut, s, bound(s.timeout)),
        Step::WaitFor(s) => wait_for(dut, s, bound(s.timeout)),
        Step::Console(c) => console(dut, c, bound(c.timeout)),
        Step::Reboot(r) => {
            let took = dut.reboot(bound(r.timeout), r.new_host_key)?;
            dut.record("reboot_seconds", format!("{:.1}", took.as_secs_f64()));
            Ok(())
        }
        Step::PowerCycle(r) => {
            if r.new_host_key {
                dut.forget_host_key();
            }
            let took = dut.power_cycle(bound(r.timeout))?;
            dut.record("boot_seconds", format!("{:.1}", took.as_secs_f64()));
            Ok(())
        }
        Step::Configure(c) => configure(dut, c, bound(c.timeout)),
        Step::Copy(c) => copy(dut, c, suite_dir, bound(c.timeout)),
        Step::Check(c) => super::builtin::run(dut, &c.name, &c.args, bound(c.timeout)),
    }
}

fn regex(pattern: &str) -> Result<Regex> {
    regex::RegexBuilder::new(pattern)
        .multi_line(true)
        .build()
        .map_err(|e| Error::input(format!("invalid pattern /{pattern}/: {e}")))
}

/// Checks a command's result against the step; `Err(Failed)` says what differed.
fn check(s: &SshStep, command: &str, out: &crate::ssh::ExecOutput, dut: &Dut) -> Result<()> {
    if let Some(want) = s.status {
        if out.status != want {
            return Err(Error::failed(format!(
                "`{command}` exited {} (expected {want}){}",
                out.status,
                tail(&out.stderr, &out.stdout)
            )));
        }
    }
    if let Some(p) = &s.output {
        let p = dut.expand(p);
        if !regex(&p)?.is_match(&out.stdout) {
            return Err(Error::failed(format!(
                "`{command}` printed {:?}, which does not match /{p}/",
                short(&out.stdout)
            )));
        }
    }
    if let Some(p) = &s.not_output {
        let p = dut.expand(p);
        if regex(&p)?.is_match(&out.stdout) {
            return Err(Error::failed(format!(
                "`{command}` printed {:?}, which matches /{p}/ but must not",
                short(&out.stdout)
            )));
        }
    }
    Ok(())
}

fn ssh(dut: &mut Dut, s: &SshStep, timeout: Duration) -> Result<()> {
    let command = dut.expand(&s.run);
    if s.without_key {
        return match (dut.try_login_without_key(timeout), s.refused) {
            (Ok(_), true) => Err(Error::failed(
                "root logged in over SSH without a key, but must be refused",
            )),
            (Err(Error::Failed(_)), true) => {
                dut.note("root login without a key: refused, as expected");
                Ok(())
            }
            (Err(e), _) => Err(e),
            (Ok(session), false) => {
                dut.note("root login without a key: allowed");
                let out = session.exec(&command, b"", timeout, &mut || dut.alive())?;
                check(s, &command, &out, dut)
            }
        };
    }
    let out = dut.exec(&command, timeout)?;
    check(s, &command, &out, dut)?;
    if let Some(name) = &s.save {
        dut.vars.insert(name.clone(), out.stdout.trim().to_string());
    }
    Ok(())
}

fn wait_for(dut: &mut Dut, s: &SshStep, timeout: Duration) -> Result<()> {
    let command = dut.expand(&s.run);
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let last = dut
            .exec(
                &command,
                left.clamp(Duration::from_secs(1), Duration::from_secs(30)),
            )
            .and_then(|out| check(s, &command, &out, dut));
        match last {
            Ok(()) => return Ok(()),
            Err(e @ (Error::Input(_) | Error::Interrupted)) => return Err(e),
            Err(e) if std::time::Instant::now() >= deadline => {
                return Err(Error::failed(format!(
                    "gave up after {}s waiting: {e}",
                    timeout.as_secs()
                )))
            }
            Err(_) => std::thread::sleep(Duration::from_secs(1)),
        }
    }
}

fn console(dut: &mut Dut, c: &ConsoleStep, timeout: Duration) -> Result<()> {
    let con = dut.target.console().clone();
    if c.login {
        con.login("root", timeout)?;
        dut.note("logged in as root on the serial console");
    }
    if let Some(text) = &c.send {
        con.skip_to_end();
        con.send(&format!("{}\r", dut.expand(text)))?;
    }
    if let Some(cmd) = &c.run {
        let cmd = dut.expand(cmd);
        let (status, output) = con.run(&cmd, timeout)?;
        dut.note(&format!(
            "console$ {cmd} -> exit {status}: {}",
            short(&output)
        ));
        if let Some(want) = c.status {
            if status != want {
                return Err(Error::failed(format!(
                    "`{cmd}` on the serial console exited {status} (expected {want})"
                )));
            }
        }
        if let Some(p) = &c.expect {
            if !regex(&dut.expand(p))?.is_match(&output) {
                return Err(Error::failed(format!(
                    "`{cmd}` on the serial console printed {:?}, which does not match /{p}/",
                    short(&output)
                )));
            }
        }
    } else if let Some(p) = &c.expect {
        con.expect(&dut.expand(p), timeout)?;
    }
    if let Some(p) = &c.absent {
        con.expect_absent(&dut.expand(p), timeout)?;
    }
    Ok(())
}

/// The changes that set `set`'s keys, remove `remove`'s and write `files` into the boot
/// partition: what a `configure` step or a suite's own configuration asks for.
pub fn changes(
    set: &BTreeMap<String, serde_json::Value>,
    remove: &[String],
    files: &BTreeMap<String, String>,
) -> Vec<Change> {
    let sets = set
        .iter()
        .map(|(k, v)| Change::Set(k.clone(), v.to_string()));
    let removes = remove.iter().map(|k| Change::Remove(k.clone()));
    let writes = files
        .iter()
        .map(|(p, text)| Change::WriteFile(p.clone(), text.clone().into_bytes()));
    sets.chain(removes).chain(writes).collect()
}

fn configure(dut: &mut Dut, c: &ConfigureStep, timeout: Duration) -> Result<()> {
    let changes = changes(&c.set, &c.remove, &c.files);
    match c.on {
        ConfigureOn::Live => dut.configure_live(&changes, timeout),
        ConfigureOn::Image => {
            let took = dut.configure_image(&changes, timeout)?;
            dut.record("boot_seconds", format!("{:.1}", took.as_secs_f64()));
            Ok(())
        }
    }
}

fn copy(dut: &mut Dut, c: &CopyStep, suite_dir: &std::path::Path, timeout: Duration) -> Result<()> {
    match (&c.from, &c.to_device, &c.from_device) {
        (Some(from), Some(to), None) => {
            let path = suite_dir.join(dut.expand(&from.to_string_lossy()));
            let bytes =
                std::fs::read(&path).input_ctx(|| format!("cannot read {}", path.display()))?;
            dut.write_file(&dut.expand(to), &bytes, timeout)
        }
        (None, None, Some(remote)) => {
            let remote = dut.expand(remote);
            let out = dut.exec(
                &format!("base64 < {}", crate::ssh::shell_quote(&remote)),
                timeout,
            )?;
            if out.status != 0 {
                return Err(Error::failed(format!("cannot read {remote} on the device")));
            }
            let name = std::path::Path::new(&remote)
                .file_name()
                .map(|n| n.to_os_string())
                .unwrap_or_else(|| "copied".into());
            let dest = dut.run_dir.join("files").join(name);
            std::fs::create_dir_all(dut.run_dir.join("files"))
                .infra_ctx(|| "cannot create files/".into())?;
            let text: String = out.stdout.split_whitespace().collect();
            let bytes = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, text)
                .infra_ctx(|| format!("the device sent invalid base64 for {remote}"))?;
            std::fs::write(&dest, bytes).infra_ctx(|| format!("cannot write {}", dest.display()))
        }
        _ => Err(Error::input(
            "a copy step takes either `from` and `to_device`, or `from_device`",
        )),
    }
}

fn short(s: &str) -> String {
    let s = s.trim();
    if s.len() > 300 {
        format!("{}…", &s[..s.floor_char_boundary(300)])
    } else {
        s.to_string()
    }
}

fn tail(stderr: &str, stdout: &str) -> String {
    let text = if stderr.trim().is_empty() {
        stdout
    } else {
        stderr
    };
    let last = text.trim().lines().last().unwrap_or("");
    if last.is_empty() {
        String::new()
    } else {
        format!(": {}", short(last))
    }
}
