//! `cargo xtask download`: CIFAR-10/100 from the official binary archives (or a local copy),
//! verified file by file.
//!
//! - HTTP download into `<data>/.downloads/<archive>.partial`, resumed with a `Range` request
//!   after an interruption, renamed to `<archive>` only when its md5 matches the official one;
//! - extraction into a temporary directory beside the target, every file's md5 checked, then
//!   renamed into place: a half-extracted or corrupt dataset is never left where the reader looks;
//! - `--from` takes a `.tar.gz`, `.tar.xz`, an unpacked directory, or a directory holding such
//!   archives (`../shared/data`), and verifies the same per-file checksums;
//! - a dataset already present and valid is left alone.

use std::fs::{self, File};
use std::io::{self, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use md5::{Digest, Md5};

/// A file a dataset must contain.
#[derive(Debug, Clone)]
pub struct FileSpec {
    /// Path inside the dataset directory.
    pub name: String,
    /// Official md5 (hex); `None`: checked by `lines` instead.
    pub md5: Option<String>,
    /// For text files without a canonical md5: the number of non-empty lines.
    pub lines: Option<usize>,
}

/// A dataset: where it comes from and what it must contain.
#[derive(Debug, Clone)]
pub struct DatasetSpec {
    /// `cifar10` / `cifar100`.
    pub name: String,
    /// Directory the archive unpacks to.
    pub dir: String,
    /// Official archive URL.
    pub url: String,
    /// Official archive md5.
    pub archive_md5: Option<String>,
    /// File name stems of local archives (`cifar-10-binary` → `.tar.gz` / `.tar.xz`).
    pub archive_stem: String,
    /// Required files.
    pub files: Vec<FileSpec>,
}

fn file(name: &str, md5: &str) -> FileSpec {
    FileSpec {
        name: name.into(),
        md5: Some(md5.into()),
        lines: None,
    }
}

fn text(name: &str, lines: usize) -> FileSpec {
    FileSpec {
        name: name.into(),
        md5: None,
        lines: Some(lines),
    }
}

/// CIFAR-10, binary version.
pub fn cifar10() -> DatasetSpec {
    DatasetSpec {
        name: "cifar10".into(),
        dir: "cifar-10-batches-bin".into(),
        url: "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz".into(),
        archive_md5: Some("c32a1d4ab5d03f1284b67883e8d87530".into()),
        archive_stem: "cifar-10-binary".into(),
        files: vec![
            file("data_batch_1.bin", "5dd7e06a14cb22eb9f671a540d1b7c25"),
            file("data_batch_2.bin", "5ea93a67294ea407fff1d09f752e9692"),
            file("data_batch_3.bin", "942cd6a4bcdd0dd3c604fbe906cb4421"),
            file("data_batch_4.bin", "ae636b3ba5c66a11e91e8cb52e771fcb"),
            file("data_batch_5.bin", "53f37980c15c3d472c316c40844f3f0d"),
            file("test_batch.bin", "803d5f7f4d78ea53de84dbe85f74fb6d"),
            text("batches.meta.txt", 10),
        ],
    }
}

/// CIFAR-100, binary version.
pub fn cifar100() -> DatasetSpec {
    DatasetSpec {
        name: "cifar100".into(),
        dir: "cifar-100-binary".into(),
        url: "https://www.cs.toronto.edu/~kriz/cifar-100-binary.tar.gz".into(),
        archive_md5: Some("03b5dce01913d631647c71ecec9e9cb8".into()),
        archive_stem: "cifar-100-binary".into(),
        files: vec![
            file("train.bin", "6172c7755cfe09b2fe270c85cebc1b15"),
            file("test.bin", "4499cfba6c016c1be1438163640a0898"),
            text("fine_label_names.txt", 100),
            text("coarse_label_names.txt", 20),
        ],
    }
}

fn md5_file(path: &Path) -> Result<String> {
    let mut f = BufReader::new(
        File::open(path).with_context(|| format!("cannot open {}", path.display()))?,
    );
    let mut h = Md5::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f
            .read(&mut buf)
            .with_context(|| format!("cannot read {}", path.display()))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(format!("{:x}", h.finalize()))
}

/// Checks every file of `spec` in `dir`; the error names the first bad file.
pub fn verify_dir(dir: &Path, spec: &DatasetSpec) -> Result<()> {
    for f in &spec.files {
        let path = dir.join(&f.name);
        if !path.is_file() {
            bail!("{}: missing", path.display());
        }
        if let Some(want) = &f.md5 {
            let got = md5_file(&path)?;
            if &got != want {
                bail!(
                    "{}: md5 {got}, expected {want} (corrupt or not the official file)",
                    path.display()
                );
            }
        }
        if let Some(want) = f.lines {
            let text = fs::read_to_string(&path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            let got = text.lines().filter(|l| !l.trim().is_empty()).count();
            if got != want {
                bail!("{}: {got} names, expected {want}", path.display());
            }
        }
    }
    Ok(())
}

fn bar(len: u64, msg: &str) -> ProgressBar {
    let b = ProgressBar::new(len);
    if std::io::IsTerminal::is_terminal(&io::stderr()) {
        b.set_style(
            ProgressStyle::with_template(
                "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
    } else {
        b.set_draw_target(ProgressDrawTarget::hidden());
    }
    b.set_message(msg.to_string());
    b
}

/// Downloads `url` to `dest`, resuming `dest.partial` with a Range request, and renames it to
/// `dest` only when complete and (if given) its md5 matches. A mismatching download is deleted.
pub fn fetch(url: &str, dest: &Path, md5: Option<&str>) -> Result<()> {
    let partial = PathBuf::from(format!("{}.partial", dest.display()));
    if let Some(d) = dest.parent() {
        fs::create_dir_all(d).with_context(|| format!("cannot create {}", d.display()))?;
    }
    let have = fs::metadata(&partial).map(|m| m.len()).unwrap_or(0);
    // A stalled server must not hang the download: give up after 30 s without progress (the
    // partial file is kept, and the next run resumes it).
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_connect(Some(Duration::from_secs(30)))
        .timeout_per_read(Some(Duration::from_secs(30)))
        .build()
        .into();
    let mut req = agent.get(url);
    if have > 0 {
        req = req.header("Range", &format!("bytes={have}-"));
    }
    let resp = req
        .call()
        .map_err(|e| anyhow::anyhow!("cannot download {url}: {e}"))?;
    let status = resp.status().as_u16();
    let append = have > 0 && status == 206;
    let total = resp
        .headers()
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .map(|n| if append { n + have } else { n });
    if have > 0 {
        eprintln!(
            "xtask: {} {url} from byte {have}",
            if append {
                "resuming"
            } else {
                "server ignored the range; restarting"
            }
        );
    }
    let mut out = fs::OpenOptions::new()
        .create(true)
        .write(true)
        .append(append)
        .truncate(!append)
        .open(&partial)
        .with_context(|| format!("cannot write {}", partial.display()))?;
    let pb = bar(
        total.unwrap_or(0),
        &format!(
            "downloading {}",
            dest.file_name()
                .map(|n| n.to_string_lossy())
                .unwrap_or_default()
        ),
    );
    pb.set_position(if append { have } else { 0 });
    let mut body = resp.into_body().into_reader();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = body.read(&mut buf).with_context(|| {
            format!(
                "download of {url} interrupted; run again to resume from {}",
                partial.display()
            )
        })?;
        if n == 0 {
            break;
        }
        out.write_all(&buf[..n])
            .with_context(|| format!("cannot write {}", partial.display()))?;
        pb.inc(n as u64);
    }
    out.sync_all()
        .with_context(|| format!("cannot sync {}", partial.display()))?;
    pb.finish_and_clear();
    let size = fs::metadata(&partial)?.len();
    if let Some(t) = total
        && size != t
    {
        bail!("download of {url} ended at {size} of {t} bytes; run again to resume");
    }
    if let Some(want) = md5 {
        let got = md5_file(&partial)?;
        if got != want {
            let _ = fs::remove_file(&partial);
            bail!("{url}: md5 {got}, expected {want}: the download is corrupt and was deleted");
        }
    }
    fs::rename(&partial, dest).with_context(|| format!("cannot rename {}", partial.display()))
}

/// Unpacks a `.tar.gz` / `.tgz` / `.tar.xz` archive into `into`.
fn unpack(archive: &Path, into: &Path) -> Result<()> {
    let f = File::open(archive).with_context(|| format!("cannot open {}", archive.display()))?;
    let name = archive.to_string_lossy();
    let reader: Box<dyn Read> = if name.ends_with(".tar.xz") || name.ends_with(".txz") {
        Box::new(liblzma::read::XzDecoder::new(BufReader::new(f)))
    } else if name.ends_with(".tar.gz") || name.ends_with(".tgz") {
        Box::new(flate2::read::GzDecoder::new(BufReader::new(f)))
    } else {
        bail!("{}: not a .tar.gz or .tar.xz archive", archive.display());
    };
    tar::Archive::new(reader).unpack(into).with_context(|| {
        format!(
            "cannot unpack {} (corrupt archive or disk full?)",
            archive.display()
        )
    })
}

/// Where a `--from` source holds the dataset.
enum Source {
    Archive(PathBuf),
    Dir(PathBuf),
}

fn locate(from: &Path, spec: &DatasetSpec) -> Result<Source> {
    if from.is_file() {
        return Ok(Source::Archive(from.to_path_buf()));
    }
    if !from.is_dir() {
        bail!("--from {}: no such file or directory", from.display());
    }
    if from.join(&spec.dir).is_dir() {
        return Ok(Source::Dir(from.join(&spec.dir)));
    }
    if from.file_name().is_some_and(|n| n == spec.dir.as_str())
        || spec.files.iter().all(|f| from.join(&f.name).is_file())
    {
        return Ok(Source::Dir(from.to_path_buf()));
    }
    for ext in ["tar.gz", "tgz", "tar.xz"] {
        let a = from.join(format!("{}.{ext}", spec.archive_stem));
        if a.is_file() {
            return Ok(Source::Archive(a));
        }
    }
    bail!(
        "--from {}: holds neither {}/ nor {}.tar.gz / .tar.xz",
        from.display(),
        spec.dir,
        spec.archive_stem
    )
}

/// Makes `spec` available and verified in `data_dir/<spec.dir>`.
pub fn install(spec: &DatasetSpec, data_dir: &Path, from: Option<&Path>) -> Result<()> {
    let target = data_dir.join(&spec.dir);
    if target.is_dir() {
        match verify_dir(&target, spec) {
            Ok(()) => {
                eprintln!(
                    "xtask: {} already present and valid in {}",
                    spec.name,
                    target.display()
                );
                return Ok(());
            }
            Err(e) => bail!(
                "{} exists but is invalid ({e:#}); remove it to reinstall",
                target.display()
            ),
        }
    }
    fs::create_dir_all(data_dir)
        .with_context(|| format!("cannot create {}", data_dir.display()))?;
    let tmp = tempfile::Builder::new()
        .prefix(&format!(".{}-", spec.dir))
        .tempdir_in(data_dir)
        .with_context(|| {
            format!(
                "cannot create a temporary directory in {}",
                data_dir.display()
            )
        })?;
    let unpacked = match from.map(|f| locate(f, spec)).transpose()? {
        Some(Source::Dir(dir)) => {
            verify_dir(&dir, spec)?;
            let dest = tmp.path().join(&spec.dir);
            fs::create_dir_all(&dest)?;
            for f in &spec.files {
                fs::copy(dir.join(&f.name), dest.join(&f.name))
                    .with_context(|| format!("cannot copy {}", f.name))?;
            }
            dest
        }
        Some(Source::Archive(a)) => {
            eprintln!("xtask: unpacking {}", a.display());
            unpack(&a, tmp.path())?;
            tmp.path().join(&spec.dir)
        }
        None => {
            let archive = data_dir
                .join(".downloads")
                .join(format!("{}.tar.gz", spec.archive_stem));
            if !archive.is_file() {
                fetch(&spec.url, &archive, spec.archive_md5.as_deref())?;
            }
            unpack(&archive, tmp.path())?;
            tmp.path().join(&spec.dir)
        }
    };
    verify_dir(&unpacked, spec)?;
    fs::rename(&unpacked, &target)
        .with_context(|| format!("cannot move the dataset into {}", target.display()))?;
    eprintln!(
        "xtask: {} installed and verified in {}",
        spec.name,
        target.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A tiny synthetic dataset and its .tar.gz.
    fn synthetic(dir: &Path) -> (DatasetSpec, Vec<u8>) {
        let data: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let labels = "a\nb\n";
        let mut tar = tar::Builder::new(flate2::write::GzEncoder::new(
            Vec::new(),
            flate2::Compression::fast(),
        ));
        for (name, bytes) in [
            ("toy-bin/data.bin", data.as_slice()),
            ("toy-bin/labels.txt", labels.as_bytes()),
        ] {
            let mut h = tar::Header::new_gnu();
            h.set_size(bytes.len() as u64);
            h.set_mode(0o644);
            h.set_cksum();
            tar.append_data(&mut h, name, bytes).expect("append");
        }
        let gz = tar.into_inner().expect("tar").finish().expect("gz");
        let spec = DatasetSpec {
            name: "toy".into(),
            dir: "toy-bin".into(),
            url: String::new(),
            archive_md5: Some(format!("{:x}", Md5::digest(&gz))),
            archive_stem: "toy-binary".into(),
            files: vec![
                FileSpec {
                    name: "data.bin".into(),
                    md5: Some(format!("{:x}", Md5::digest(&data))),
                    lines: None,
                },
                text("labels.txt", 2),
            ],
        };
        let _ = dir;
        (spec, gz)
    }

    /// Serves `body` over plain HTTP/1.1 on 127.0.0.1, one request per connection; the first
    /// `cut` responses promise the whole (rest of the) body, send half and hang up. Honors
    /// `Range: bytes=N-` with 206.
    fn serve(body: Vec<u8>, cut: usize) -> (String, Arc<AtomicUsize>, std::thread::JoinHandle<()>) {
        use std::io::{BufRead, BufReader as R};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let hits = Arc::new(AtomicUsize::new(0));
        let h2 = hits.clone();
        let handle = std::thread::spawn(move || {
            for _ in 0..(cut + 2) {
                let Ok((mut sock, _)) = listener.accept() else {
                    return;
                };
                let mut reader = R::new(sock.try_clone().expect("clone"));
                let mut range = None;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    let lower = line.to_ascii_lowercase();
                    if let Some(v) = lower.strip_prefix("range: bytes=") {
                        range = v.trim().trim_end_matches('-').parse::<usize>().ok();
                    }
                }
                let n = h2.fetch_add(1, Ordering::SeqCst);
                let start = range.unwrap_or(0);
                let rest = &body[start..];
                let status = if range.is_some() {
                    "206 Partial Content"
                } else {
                    "200 OK"
                };
                let head = format!(
                    "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    rest.len()
                );
                let _ = sock.write_all(head.as_bytes());
                let send = if n < cut {
                    &rest[..rest.len() / 2]
                } else {
                    rest
                };
                let _ = sock.write_all(send);
                let _ = sock.flush();
                drop(sock); // hang up
            }
        });
        (format!("http://{addr}/toy-binary.tar.gz"), hits, handle)
    }

    #[test]
    fn clean_download_installs_a_verified_dataset() {
        let d = tempfile::tempdir().expect("tmp");
        let (mut spec, gz) = synthetic(d.path());
        let (url, hits, _h) = serve(gz, 0);
        spec.url = url;
        install(&spec, d.path(), None).expect("install");
        verify_dir(&d.path().join("toy-bin"), &spec).expect("valid");
        assert_eq!(hits.load(Ordering::SeqCst), 1);
        // Present and valid: nothing is fetched again.
        install(&spec, d.path(), None).expect("no-op");
        assert_eq!(hits.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn an_interrupted_download_resumes_with_a_range_request() {
        let d = tempfile::tempdir().expect("tmp");
        let (mut spec, gz) = synthetic(d.path());
        let (url, hits, _h) = serve(gz, 1);
        spec.url = url;
        let e = install(&spec, d.path(), None).expect_err("cut off");
        assert!(format!("{e:#}").contains("resume"), "{e:#}");
        assert!(
            !d.path().join("toy-bin").exists(),
            "no dataset from a partial download"
        );
        let partial = d.path().join(".downloads/toy-binary.tar.gz.partial");
        let have = fs::metadata(&partial).expect("partial kept").len();
        assert!(have > 0);
        install(&spec, d.path(), None).expect("resumed");
        assert_eq!(hits.load(Ordering::SeqCst), 2);
        verify_dir(&d.path().join("toy-bin"), &spec).expect("valid");
        assert!(!partial.exists());
    }

    #[test]
    fn a_corrupt_download_is_rejected_and_deleted() {
        let d = tempfile::tempdir().expect("tmp");
        let (mut spec, mut gz) = synthetic(d.path());
        let n = gz.len();
        gz[n / 2] ^= 0xff;
        let (url, _hits, _h) = serve(gz, 0);
        spec.url = url;
        let e = format!("{:#}", install(&spec, d.path(), None).expect_err("corrupt"));
        assert!(e.contains("md5") && e.contains("corrupt"), "{e}");
        assert!(!d.path().join("toy-bin").exists());
        assert!(
            !d.path()
                .join(".downloads/toy-binary.tar.gz.partial")
                .exists()
        );
        assert!(!d.path().join(".downloads/toy-binary.tar.gz").exists());
    }

    #[test]
    fn http_errors_and_unreachable_hosts_are_one_clear_error() {
        let d = tempfile::tempdir().expect("tmp");
        let (mut spec, _) = synthetic(d.path());
        spec.url = "http://127.0.0.1:9/toy.tar.gz".into(); // discard port: connection refused
        let e = format!(
            "{:#}",
            install(&spec, d.path(), None).expect_err("unreachable")
        );
        assert!(
            e.contains("cannot download http://127.0.0.1:9/toy.tar.gz"),
            "{e}"
        );
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let t = std::thread::spawn(move || {
            if let Ok((mut sock, _)) = listener.accept() {
                let mut buf = [0u8; 4096];
                let _ = sock.read(&mut buf);
                let _ = sock.write_all(
                    b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                );
            }
        });
        spec.url = format!("http://{addr}/missing.tar.gz");
        let e = format!("{:#}", install(&spec, d.path(), None).expect_err("404"));
        assert!(e.contains("404"), "{e}");
        let _ = t.join();
    }

    #[test]
    fn from_local_archives_and_directories_with_checksums() {
        let d = tempfile::tempdir().expect("tmp");
        let (spec, gz) = synthetic(d.path());
        let src = d.path().join("src");
        fs::create_dir_all(&src).expect("mkdir");
        fs::write(src.join("toy-binary.tar.gz"), &gz).expect("write");
        let data = d.path().join("data");
        install(&spec, &data, Some(&src)).expect("from a directory of archives");
        // From the unpacked directory, into another data dir.
        let data2 = d.path().join("data2");
        install(&spec, &data2, Some(&data)).expect("from an unpacked directory");
        verify_dir(&data2.join("toy-bin"), &spec).expect("valid");
        // A corrupted unpacked file is refused and nothing is installed.
        fs::write(data.join("toy-bin/data.bin"), b"junk").expect("write");
        let data3 = d.path().join("data3");
        let e = format!(
            "{:#}",
            install(&spec, &data3, Some(&data.join("toy-bin"))).expect_err("corrupt")
        );
        assert!(e.contains("data.bin: md5"), "{e}");
        assert!(!data3.join("toy-bin").exists());
        // An invalid existing dataset is reported, not silently replaced.
        let e = format!(
            "{:#}",
            install(&spec, &data, Some(&src)).expect_err("invalid existing")
        );
        assert!(e.contains("remove it"), "{e}");
    }
}
