//! A headless Chromium driven over WebDriver: Debian's `chromium` and `chromedriver`, one
//! chromedriver per test on a free loopback port, one browser session in a fresh profile.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::elements::Element;
use fantoccini::wd::Capabilities;
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{Value, json};
use tempfile::TempDir;

use crate::helpers::http_client;
use crate::process::free_port;

pub const CHROMIUM: &str = "/usr/bin/chromium";
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// How long a page may take to show what a test waits for: generous, since the polling ends
/// as soon as it shows.
pub const WAIT: Duration = Duration::from_secs(10);
const POLL: Duration = Duration::from_millis(50);

pub const DESKTOP_WIDTH: u32 = 1280;
pub const PHONE_WIDTH: u32 = 390;

/// One line of the browser's console, as chromedriver's log endpoint reports it.
#[derive(Debug, Clone)]
pub struct ConsoleEntry {
    pub level: String,
    pub source: String,
    pub message: String,
}

impl ConsoleEntry {
    pub fn is_error(&self) -> bool {
        self.level == "SEVERE"
    }
}

/// chromedriver in a process group of its own, so that the browsers it started go with it
/// even when a test panics before closing its session.
struct Driver {
    child: Child,
    port: u16,
}

impl Driver {
    fn spawn() -> Driver {
        use std::os::unix::process::CommandExt as _;
        let port = free_port();
        let child = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|error| panic!("{CHROMEDRIVER} starts: {error}"));
        Driver { child, port }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    async fn wait_until_ready(&mut self) {
        let http = http_client();
        let started = Instant::now();
        loop {
            let status = http.get(format!("{}/status", self.url())).send().await;
            if let Ok(response) = status
                && let Ok(body) = response.json::<Value>().await
                && body["value"]["ready"] == true
            {
                return;
            }
            if let Ok(Some(exit)) = self.child.try_wait() {
                panic!("chromedriver exited at start ({exit}); is port {} taken?", self.port);
            }
            assert!(started.elapsed() < WAIT, "chromedriver never answered on port {}", self.port);
            tokio::time::sleep(POLL).await;
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let group = i32::try_from(self.child.id()).ok().and_then(rustix::process::Pid::from_raw);
        if let Some(group) = group {
            let _ = rustix::process::kill_process_group(group, rustix::process::Signal::KILL);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether the browser tests can run here. Without Chromium they are skipped, loudly; under
/// `CI=true` a missing browser fails the test instead, so CI cannot pass by skipping them.
fn browser_installed(test: &str) -> bool {
    let missing: Vec<&str> =
        [CHROMIUM, CHROMEDRIVER].into_iter().filter(|p| !Path::new(p).is_file()).collect();
    if missing.is_empty() {
        return true;
    }
    assert!(
        !std::env::var("CI").is_ok_and(|v| v == "true"),
        "{} missing under CI=true",
        missing.join(" and ")
    );
    eprintln!(
        "SKIPPED: {test}: {} missing; install Debian's chromium and chromium-driver (scripts/test does)",
        missing.join(" and ")
    );
    false
}

/// Where screenshots go: `ui-screenshots` in the workspace's target directory, which is
/// ignored by git.
pub fn screenshot_dir() -> PathBuf {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let target = match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => workspace.join(dir),
        None => workspace.join("target"),
    };
    target.join("ui-screenshots")
}

pub struct Browser {
    client: Client,
    /// The application under test, e.g. `http://127.0.0.1:41234`.
    base: String,
    test: String,
    session: String,
    http: reqwest::Client,
    // Dropped after the client, whose last request closes the session on this driver.
    driver: Driver,
    _profile: TempDir,
}

impl Browser {
    /// A browser on the application at `base`, named `test` in its screenshots; `None` when
    /// the browser is missing outside CI (the test then returns early).
    pub async fn start(test: &str, base: &str) -> Option<Browser> {
        if !browser_installed(test) {
            return None;
        }
        let profile = tempfile::tempdir().expect("a profile directory");
        let mut driver = Driver::spawn();
        driver.wait_until_ready().await;
        let client = ClientBuilder::new(HttpConnector::new())
            .capabilities(capabilities(profile.path()))
            .connect(&driver.url())
            .await
            .unwrap_or_else(|error| panic!("a Chromium session: {error}"));
        let session = client.session_id().await.expect("the session id").expect("a session");
        let browser = Browser {
            client,
            base: base.trim_end_matches('/').to_owned(),
            test: test.to_owned(),
            session,
            http: http_client(),
            driver,
            _profile: profile,
        };
        browser.set_width(DESKTOP_WIDTH).await;
        Some(browser)
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Opens `path` of the application (or any URL when it has a scheme).
    pub async fn goto(&self, path: &str) {
        let url =
            if path.contains("://") || path.starts_with("data:") { path.to_owned() } else { self.url(path) };
        self.client.goto(&url).await.unwrap_or_else(|error| panic!("opening {url}: {error}"));
    }

    /// The path and query of the page shown.
    pub async fn path(&self) -> String {
        let url = self.client.current_url().await.expect("the current URL");
        match url.query() {
            Some(query) => format!("{}?{query}", url.path()),
            None => url.path().to_owned(),
        }
    }

    /// Signs in with `token` through the sign-in form and waits to be let in.
    pub async fn sign_in(&self, token: &str) {
        self.goto("/ui/sign-in").await;
        self.sign_in_here(token).await;
    }

    /// Fills in the sign-in form shown (after a redirect to it, say) and waits to leave it.
    pub async fn sign_in_here(&self, token: &str) {
        let field = self.wait_for("input[name=token]").await;
        field.send_keys(token).await.expect("the token is typed");
        self.click("#sign-in").await;
        self.wait_until("the sign-in page is left", async || !self.path().await.starts_with("/ui/sign-in"))
            .await;
    }

    /// The first element matching `css`, waiting up to [`WAIT`] for it to appear.
    pub async fn wait_for(&self, css: &str) -> Element {
        match self.client.wait().at_most(WAIT).every(POLL).for_element(Locator::Css(css)).await {
            Ok(element) => element,
            Err(error) => {
                self.screenshot(&format!("missing-{}", file_safe(css))).await;
                panic!("`{css}` never appeared on {} ({error})", self.path().await)
            }
        }
    }

    /// Every element matching `css` now, perhaps none.
    pub async fn find_all(&self, css: &str) -> Vec<Element> {
        self.client
            .find_all(Locator::Css(css))
            .await
            .unwrap_or_else(|error| panic!("finding `{css}`: {error}"))
    }

    pub async fn exists(&self, css: &str) -> bool {
        !self.find_all(css).await.is_empty()
    }

    pub async fn click(&self, css: &str) {
        let element = self.wait_for(css).await;
        element.click().await.unwrap_or_else(|error| panic!("clicking `{css}`: {error}"));
    }

    /// The text of the first element matching `css`, once it appears.
    pub async fn text(&self, css: &str) -> String {
        self.wait_for(css).await.text().await.unwrap_or_else(|error| panic!("the text of `{css}`: {error}"))
    }

    /// Polls `ready` until it holds, up to [`WAIT`]; `what` names the condition on failure.
    pub async fn wait_until(&self, what: &str, mut ready: impl AsyncFnMut() -> bool) {
        let started = Instant::now();
        while !ready().await {
            if started.elapsed() > WAIT {
                self.screenshot(&format!("timeout-{}", file_safe(what))).await;
                panic!("timed out waiting until {what} (on {})", self.path().await);
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Runs `script` (a function body; `arguments` holds `args`) in the page and answers what
    /// it returns, awaiting a promise it returns.
    pub async fn run(&self, script: &str, args: Vec<Value>) -> Value {
        self.client.execute(script, args).await.unwrap_or_else(|error| panic!("the script failed: {error}"))
    }

    /// Resizes the window to `width` CSS pixels wide (900 tall).
    pub async fn set_width(&self, width: u32) {
        self.client.set_window_size(width, 900).await.expect("the window is resized");
    }

    /// Writes a PNG of the viewport to `target/ui-screenshots/<test>-<name>.png`.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        let dir = screenshot_dir();
        std::fs::create_dir_all(&dir).unwrap_or_else(|error| panic!("creating {}: {error}", dir.display()));
        let path = dir.join(format!("{}-{}.png", self.test, name));
        match self.client.screenshot().await {
            Ok(png) => std::fs::write(&path, png)
                .unwrap_or_else(|error| panic!("writing {}: {error}", path.display())),
            Err(error) => eprintln!("no screenshot {}: {error}", path.display()),
        }
        path
    }

    /// The console entries logged since the last call (chromedriver hands each out once),
    /// read from its legacy log endpoint, which the W3C protocol lacks and fantoccini omits.
    pub async fn console(&self) -> Vec<ConsoleEntry> {
        let url = format!("{}/session/{}/se/log", self.driver.url(), self.session);
        let response = self
            .http
            .post(&url)
            .json(&json!({"type": "browser"}))
            .send()
            .await
            .unwrap_or_else(|error| panic!("reading the browser log: {error}"));
        let body: Value = response.json().await.expect("the browser log as JSON");
        let entries =
            body["value"].as_array().unwrap_or_else(|| panic!("the browser log is not a list: {body}"));
        entries
            .iter()
            .map(|entry| ConsoleEntry {
                level: entry["level"].as_str().unwrap_or_default().to_owned(),
                source: entry["source"].as_str().unwrap_or_default().to_owned(),
                message: entry["message"].as_str().unwrap_or_default().to_owned(),
            })
            .collect()
    }

    /// Fails on any error (`SEVERE`) logged to the console since the last look: a script that
    /// threw, a refused Content-Security-Policy, a resource that failed to load.
    pub async fn assert_no_console_errors(&self) {
        let errors: Vec<ConsoleEntry> =
            self.console().await.into_iter().filter(ConsoleEntry::is_error).collect();
        if !errors.is_empty() {
            let path = self.path().await;
            let lines: Vec<String> =
                errors.iter().map(|e| format!("  [{}] {}", e.source, e.message)).collect();
            panic!("console errors on {path}:\n{}", lines.join("\n"));
        }
    }

    /// Opens `path`, waits for its `<main>`, screenshots it as `name` and checks the console.
    pub async fn visit(&self, path: &str, name: &str) {
        self.goto(path).await;
        self.wait_for("main").await;
        self.screenshot(name).await;
        self.assert_no_console_errors().await;
    }

    /// Ends the session, so that Chromium exits on its own, then chromedriver.
    pub async fn close(self) {
        let Browser { client, driver, .. } = self;
        let _ = client.close().await;
        drop(driver);
    }
}

fn capabilities(profile: &Path) -> Capabilities {
    let args = [
        "--headless=new".to_owned(),
        "--no-sandbox".to_owned(),
        "--disable-gpu".to_owned(),
        "--disable-dev-shm-usage".to_owned(),
        "--disable-quic".to_owned(),
        "--no-first-run".to_owned(),
        "--disable-background-networking".to_owned(),
        "--disable-component-update".to_owned(),
        "--disable-sync".to_owned(),
        format!("--window-size={DESKTOP_WIDTH},900"),
        format!("--user-data-dir={}", profile.display()),
    ];
    let capabilities = json!({
        "browserName": "chrome",
        "goog:chromeOptions": {"binary": CHROMIUM, "args": args},
        "goog:loggingPrefs": {"browser": "ALL"},
    });
    match capabilities {
        Value::Object(map) => map,
        _ => unreachable!("an object literal"),
    }
}

fn file_safe(text: &str) -> String {
    text.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '-' }).collect()
}
