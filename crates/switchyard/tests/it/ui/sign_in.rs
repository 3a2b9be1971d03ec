//! Signing in and out: the redirect to the sign-in form and back, the session cookie's flags.

use super::browser::Browser;
use crate::helpers::spawn_app;

#[tokio::test]
async fn an_admin_signs_in_lands_where_they_were_going_and_signs_out() {
    let app = spawn_app().await;
    let Some(browser) = Browser::start("sign-in", &app.address).await else { return };

    browser.goto("/ui/events").await;
    browser.wait_for("input[name=token]").await;
    let path = browser.path().await;
    assert!(path.starts_with("/ui/sign-in?next="), "no session, so the sign-in form: {path}");
    assert!(path.contains("events"), "the form remembers the page asked for: {path}");
    browser.screenshot("form").await;
    browser.assert_no_console_errors().await;

    browser.sign_in_here(&app.admin_token).await;
    assert_eq!(browser.path().await, "/ui/events", "back on the page asked for");
    browser.wait_for("main").await;
    browser.screenshot("signed-in").await;
    browser.assert_no_console_errors().await;

    let cookie = browser.client().get_named_cookie("switchyard_session").await.expect("a session cookie");
    assert_eq!(cookie.http_only(), Some(true), "{cookie}");
    assert_eq!(format!("{:?}", cookie.same_site()), "Some(Strict)", "{cookie}");
    assert_eq!(cookie.path(), Some("/ui"), "{cookie}");

    browser.click("#sign-out button, #sign-out [type=submit], button#sign-out").await;
    browser.wait_for("input[name=token]").await;
    browser.goto("/ui").await;
    browser.wait_for("input[name=token]").await;
    assert!(browser.path().await.starts_with("/ui/sign-in"), "signed out, the overview asks again");
    browser.assert_no_console_errors().await;
    browser.close().await;
}
