package tests

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
	"google.golang.org/protobuf/types/known/durationpb"

	adminv1 "kurier.dev/proto/kurier/admin/v1"
	"kurier.dev/services/contract"
	"kurier.dev/services/natstest"
	"kurier.dev/tests/harness"
)

// markup would run, were a page to take it as such: an
// org's display name and an event's id, subject and data carry it.
const markup = `<script>alert("kurier")</script><img src=x onerror=alert(1)>`

// TestConsole drives the web console of a real `kurier all` in headless
// Chromium, as a person would: sign in, make a payload subscription with
// the form, watch a delivery come into the live tail, redeliver a dead
// letter from its page, rotate a secret; hostile input stays text, a form
// without its CSRF token changes nothing, and no page opens without a
// session. With KURIER_SCREENSHOTS=<dir> it writes PNGs of the main pages
// there (docs/console/ holds those of the README).
func TestConsole(t *testing.T) {
	t.Parallel()
	chrome := chromePath(t)
	// Statistics every second, so that the plots have something to show.
	k := harness.Start(t, harness.Options{Env: []string{"KURIER_STATS_INTERVAL=1s"}})
	ctx := context.Background()
	adm := k.Admin(t)
	for org, name := range map[string]string{"acme": "ACME GmbH", "globex": "Globex Corporation", "evil": "Evil " + markup} {
		if _, err := adm.CreateOrg(ctx, &adminv1.CreateOrgRequest{OrgId: org, DisplayName: name}); err != nil {
			t.Fatal(err)
		}
	}
	created, err := adm.CreateKey(ctx, &adminv1.CreateKeyRequest{OrgId: "acme", Scopes: []adminv1.KeyScope{adminv1.KeyScope_KEY_SCOPE_INGEST}, Description: "ERP"})
	if err != nil {
		t.Fatal(err)
	}
	key := created.GetSecret()
	rec := httptest.NewServer(&contract.Recorder{})
	t.Cleanup(rec.Close)
	hooks := &contract.Receiver{URL: rec.URL, API: rec.URL}
	tg := contract.Target{HTTP: k.HTTP}
	publish := func(id, typ, subject string, data any) {
		t.Helper()
		tg.Publish(t, key, contract.Event(id, typ, subject, data))
	}

	b := newBrowser(t, chrome, k.HTTP)
	var crm, billing string // subscription ids

	t.Run("SignIn", func(t *testing.T) {
		b.do(t, "sign in",
			chromedp.Navigate(b.url("/console/login")),
			chromedp.SendKeys(chromedp.CSS(`input[name="token"]`), k.Token),
			chromedp.Click(chromedp.CSS(`main form button[type="submit"]`)),
			chromedp.WaitVisible(chromedp.CSS(`a[href="/console/orgs/acme"]`)),
		)
		if loc := b.location(t); loc != b.url("/console/") {
			t.Fatalf("signed in at %s", loc)
		}
		b.screenshot(t, "organisations")
	})

	t.Run("CreateSubscription", func(t *testing.T) {
		b.do(t, "the form of a new payload subscription",
			chromedp.Navigate(b.url("/console/orgs/acme/subscriptions/new?mode=payload")),
			chromedp.SendKeys(chromedp.CSS(`#subscription [name="system"]`), "crm"),
			chromedp.SendKeys(chromedp.CSS(`#subscription [name="event_types"]`), "invoice.changed"),
			chromedp.SendKeys(chromedp.CSS(`#subscription [name="url"]`), hooks.URL+"/crm"),
			chromedp.Submit(chromedp.CSS(`#subscription`)),
			chromedp.WaitVisible(chromedp.CSS(`.secret`)),
		)
		secret := b.text(t, `.secret`)
		if !strings.HasPrefix(secret, "whsec_") {
			t.Fatalf("the new subscription's secret shown as %q", secret)
		}
		crm = subscriptionOf(t, adm, "acme", "crm").GetSubscriptionId()
		publish("inv-1", "invoice.changed", "INV-1", map[string]any{"total": 119})
		h := hooks.WaitUnder(t, 10*time.Second, "/crm", 1)[0]
		verifySigned(t, h, secret)
	})

	t.Run("LiveTail", func(t *testing.T) {
		if crm == "" {
			t.Skip("no subscription from the form")
		}
		b.do(t, "the delivery log's live tail",
			chromedp.Navigate(b.url("/console/orgs/acme/deliveries?subscription="+url.QueryEscape(crm))),
			chromedp.WaitVisible(chromedp.CSS(`#tail-state.ok`)),
		)
		publish("inv-2", "invoice.changed", "INV-2", map[string]any{"total": 238})
		posted := time.Now()
		b.within(t, 2*time.Second, "the delivery of inv-2 in the live tail",
			chromedp.WaitVisible(chromedp.CSS(`#tail tr[data-event-id="inv-2"][data-outcome="delivered"]`)))
		t.Logf("in the live tail %v after the post", time.Since(posted).Round(time.Millisecond))
		// The filters, the tail and the log, below the plots.
		b.do(t, "scroll to the filters", chromedp.ScrollIntoView(chromedp.CSS(`#filters`)))
		b.screenshot(t, "deliveries")
	})

	t.Run("DeadLetters", func(t *testing.T) {
		sub, err := adm.CreateSubscription(ctx, &adminv1.CreateSubscriptionRequest{Subscription: &adminv1.Subscription{
			OrgId: "acme", System: "billing", Name: "Billing", EventTypes: []string{"invoice.overdue"}, Active: true,
			Mode: adminv1.DeliveryMode_DELIVERY_MODE_PAYLOAD, Url: hooks.URL + "/status/500/billing",
			RetrySchedule: []*durationpb.Duration{durationpb.New(100 * time.Millisecond)},
		}})
		if err != nil {
			t.Fatal(err)
		}
		billing = sub.GetSubscription().GetSubscriptionId()
		publish("due-1", "invoice.overdue", "INV-1", map[string]any{"days": 30})
		var dead *adminv1.DeadLetter
		natstest.WaitForErr(t, 15*time.Second, "a dead letter", func() error {
			l, err := adm.ListDeadLetters(ctx, &adminv1.ListDeadLettersRequest{OrgId: "acme", SubscriptionId: billing})
			if err != nil || len(l.GetDeadLetters()) == 0 {
				return fmt.Errorf("none yet (%v)", err)
			}
			dead = l.GetDeadLetters()[0]
			return nil
		})
		row := fmt.Sprintf(`#deadletters tr[data-delivery-id=%q][data-event-id="due-1"]`, dead.GetDeliveryId())
		b.do(t, "the dead letters",
			chromedp.Navigate(b.url("/console/orgs/acme/deadletters?subscription="+url.QueryEscape(billing))),
			chromedp.WaitVisible(chromedp.CSS(row)),
		)
		b.screenshot(t, "deadletters")
		b.screenshotOf(t, "org", "/console/orgs/acme") // billing failing

		// The receiver is mended: the settings form takes its new address.
		fixed := hooks.URL + "/billing"
		b.do(t, "the subscription's new URL",
			chromedp.Navigate(b.url("/console/subscriptions/"+url.PathEscape(billing))),
			chromedp.SetValue(chromedp.CSS(`#subscription [name="url"]`), fixed),
			chromedp.Submit(chromedp.CSS(`#subscription`)),
			// The answer's form, a new page, has the address the old one was given.
			chromedp.WaitVisible(chromedp.CSS(fmt.Sprintf(`#subscription [name="url"][value=%q]`, fixed))),
		)
		if got := subscription(t, adm, billing).GetUrl(); got != fixed {
			t.Fatalf("the form set the URL %q, want %q", got, fixed)
		}
		b.do(t, "redeliver the dead letter",
			chromedp.Navigate(b.url("/console/orgs/acme/deadletters?subscription="+url.QueryEscape(billing))),
			chromedp.Click(chromedp.CSS(row+` button`)),
		)
		h := hooks.WaitUnder(t, 10*time.Second, "/billing", 1)[0]
		if got := h.Header.Get("webhook-id"); got != dead.GetDeliveryId() {
			t.Fatalf("redelivered as %q, want the dead letter's %q", got, dead.GetDeliveryId())
		}
		natstest.WaitForErr(t, 10*time.Second, "the redelivery logged", func() error {
			l, err := adm.ListDeliveries(ctx, &adminv1.ListDeliveriesRequest{OrgId: "acme", SubscriptionId: billing, Outcome: "delivered"})
			if err != nil || len(l.GetDeliveries()) == 0 {
				return fmt.Errorf("not yet (%v)", err)
			}
			return nil
		})
		b.do(t, "the redelivery in the log",
			chromedp.Navigate(b.url("/console/orgs/acme/deliveries?subscription="+url.QueryEscape(billing))),
			chromedp.WaitVisible(chromedp.CSS(`#deliveries tr[data-event-id="due-1"][data-outcome="delivered"]`)),
			chromedp.WaitVisible(chromedp.CSS(`#deliveries tr[data-event-id="due-1"][data-outcome="dead"]`)),
		)
		b.screenshotOf(t, "subscription", "/console/subscriptions/"+url.PathEscape(billing)) // plots of failures and a success
	})

	t.Run("RotateSecret", func(t *testing.T) {
		if crm == "" {
			t.Skip("no subscription from the form")
		}
		page := b.url("/console/subscriptions/" + url.PathEscape(crm))
		b.do(t, "rotate the secret",
			chromedp.Navigate(page),
			chromedp.Submit(chromedp.CSS(`#rotate`)),
			chromedp.WaitVisible(chromedp.CSS(`.secret`)),
		)
		secret := b.text(t, `.secret`)
		if !strings.HasPrefix(secret, "whsec_") {
			t.Fatalf("the rotated secret shown as %q", secret)
		}
		// Shown once: the subscription's page does not show it again.
		b.do(t, "the subscription's page", chromedp.Navigate(page), chromedp.WaitVisible(chromedp.CSS(`#subscription`)))
		if html := b.html(t); strings.Contains(html, secret) || strings.Contains(html, `class="secret"`) {
			t.Fatal("the subscription's page shows the secret again")
		}
		publish("inv-3", "invoice.changed", "INV-3", map[string]any{"total": 357})
		var h contract.Hit
		natstest.WaitForErr(t, 10*time.Second, "inv-3 at the receiver", func() error {
			for _, hit := range hooks.Under(t, "/crm") {
				if strings.Contains(hit.Body, `"inv-3"`) {
					h = hit
					return nil
				}
			}
			return errors.New("not yet")
		})
		verifySigned(t, h, secret)
	})

	t.Run("HostileInputIsText", func(t *testing.T) {
		b.do(t, "the organisations", chromedp.Navigate(b.url("/console/")), chromedp.WaitVisible(chromedp.CSS(`a[href="/console/orgs/evil"]`)))
		b.showsText(t, "Evil "+markup)
		b.do(t, "the org's overview", chromedp.Navigate(b.url("/console/orgs/evil")), chromedp.WaitVisible(chromedp.CSS(`h1`)))
		b.showsText(t, "Evil "+markup)

		// An event that holds markup everywhere it may: in the live tail
		// (rows made by script) and in the log (rows made by the server).
		b.do(t, "the live tail",
			chromedp.Navigate(b.url("/console/orgs/acme/deliveries")),
			chromedp.WaitVisible(chromedp.CSS(`#tail-state.ok`)),
		)
		publish(markup, "invoice.changed", markup, map[string]any{"note": markup})
		b.within(t, 5*time.Second, "the hostile event in the live tail", chromedp.Poll[chromedp.Void](
			fmt.Sprintf(`[...document.querySelectorAll("#tail tr")].some(r => r.dataset.eventId === %q)`, markup)))
		b.showsText(t, markup)
		natstest.WaitForErr(t, 10*time.Second, "the hostile event logged", func() error {
			l, err := adm.ListDeliveries(ctx, &adminv1.ListDeliveriesRequest{OrgId: "acme", EventId: markup})
			if err != nil || len(l.GetDeliveries()) == 0 {
				return fmt.Errorf("not yet (%v)", err)
			}
			return nil
		})
		b.do(t, "the log", chromedp.Navigate(b.url("/console/orgs/acme/deliveries?event="+url.QueryEscape(markup))),
			chromedp.WaitVisible(chromedp.CSS(`#deliveries`)))
		b.showsText(t, markup)
		if crm != "" {
			// The event's data, in the body a preview shows.
			sample := string(contract.JSON(t, contract.Event("preview-1", "invoice.changed", "INV-9", map[string]any{"note": markup})))
			b.do(t, "a preview with hostile data",
				chromedp.Navigate(b.url("/console/subscriptions/"+url.PathEscape(crm))),
				chromedp.SetValue(chromedp.CSS(`form[action$="/preview"] [name="sample_event"]`), sample),
				chromedp.Submit(chromedp.CSS(`form[action$="/preview"]`)),
				chromedp.WaitVisible(chromedp.CSS(`main`)),
				chromedp.Poll[chromedp.Void](`document.body.innerText.includes("preview-1")`, chromedp.WithPollingTimeout(5*time.Second)),
			)
			b.inert(t)
			if text := b.text(t, `body`); !strings.Contains(text, `alert("kurier")`) && !strings.Contains(text, `alert(\"kurier\")`) {
				t.Errorf("the preview does not show the event's data:\n%s", text)
			}
		}
	})

	t.Run("FormWithoutCSRFTokenRefused", func(t *testing.T) {
		if crm == "" {
			t.Skip("no subscription from the form")
		}
		cookie := b.sessionCookie(t)
		client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
		for _, tc := range []struct {
			path string
			form url.Values
		}{
			{"/console/subscriptions/" + crm + "/active", url.Values{"active": {"false"}}},
			{"/console/subscriptions/" + crm + "/active", url.Values{"active": {"false"}, "csrf": {"not-the-token"}}},
			{"/console/subscriptions/" + crm + "/delete", nil},
			{"/console/orgs/acme/keys", url.Values{"description": {"forged"}, "scopes": {"ingest"}}},
		} {
			req, _ := http.NewRequest(http.MethodPost, b.url(tc.path), strings.NewReader(tc.form.Encode()))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			req.AddCookie(cookie)
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusForbidden {
				t.Errorf("POST %s %v with the session but not its CSRF token: %s, want 403", tc.path, tc.form, resp.Status)
			}
		}
		if s := subscription(t, adm, crm); !s.GetActive() {
			t.Error("a form without its CSRF token switched the subscription off")
		}
		keys, err := adm.ListKeys(ctx, &adminv1.ListKeysRequest{OrgId: "acme"})
		if err != nil {
			t.Fatal(err)
		}
		if n := len(keys.GetKeys()); n != 1 {
			t.Errorf("acme has %d keys after forged forms, want 1", n)
		}
	})

	t.Run("NoPageWithoutSession", func(t *testing.T) {
		sub := crm
		if sub == "" {
			sub = billing
		}
		client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
		for _, p := range []string{
			"/console/",
			"/console/orgs/acme",
			"/console/orgs/acme/subscriptions/new?mode=payload",
			"/console/subscriptions/" + sub,
			"/console/orgs/acme/deliveries",
			"/console/orgs/acme/deadletters",
			"/console/orgs/acme/plots/deliveries.svg?window=hour",
			"/console/orgs/acme/plots/latency.svg?window=day&subscription=" + sub,
		} {
			resp, err := client.Get(b.url(p))
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/console/login" {
				t.Errorf("GET %s without a session: %s to %q, want 303 to /console/login", p, resp.Status, resp.Header.Get("Location"))
			}
		}
		resp, err := client.Get(b.url("/console/orgs/acme/deliveries/tail"))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("the live tail without a session: %s, want 401", resp.Status)
		}
		for _, p := range []string{"/console/subscriptions/" + sub + "/rotate", "/console/orgs/acme/keys", "/console/orgs/acme/deadletters/redeliver"} {
			resp, err := client.PostForm(b.url(p), nil)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusUnauthorized {
				t.Errorf("POST %s without a session: %s, want 401", p, resp.Status)
			}
		}
	})

	if d := b.dialogs(); len(d) > 0 {
		t.Errorf("pages opened JavaScript dialogs: %q", d)
	}
}

// chromePath finds Chromium, or skips: `make browser` installs it. CI
// installs it before the tests, so there a missing browser fails.
func chromePath(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("KURIER_CHROME"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	msg := "no Chromium (chromium, chromium-browser, google-chrome, or KURIER_CHROME): `make browser` installs Debian's"
	if os.Getenv("CI") != "" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

// browser is one tab of a headless Chromium.
type browser struct {
	ctx   context.Context
	base  string
	shots string // KURIER_SCREENSHOTS

	mu   sync.Mutex
	seen []string // messages of JavaScript dialogs
}

func newBrowser(t *testing.T, chrome, base string) *browser {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(chrome), chromedp.WindowSize(1280, 800))
	if os.Geteuid() == 0 {
		// Chromium will not start its sandbox as root, which CI runs as;
		// the only pages it opens are the test's own.
		opts = append(opts, chromedp.NoSandbox)
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancelAlloc)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(cancel)
	b := &browser{ctx: ctx, base: base, shots: os.Getenv("KURIER_SCREENSHOTS")}
	// The first run starts the browser, which lives as long as its context:
	// no timeout on it.
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(1280, 800)); err != nil {
		t.Fatalf("start %s: %v", chrome, err)
	}
	dialogs := make(chan string, 16)
	err := chromedp.Listen(ctx, func(ev any) {
		if e, ok := ev.(*page.EventJavascriptDialogOpening); ok {
			select {
			case dialogs <- e.Message:
			default:
			}
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	// A dialog holds its page until answered: record it and dismiss it,
	// so that the test goes on to fail with what it saw.
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case m := <-dialogs:
				b.mu.Lock()
				b.seen = append(b.seen, m)
				b.mu.Unlock()
				_ = chromedp.Do(ctx, chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
					_, err := cdp.Call(ctx, tg, page.HandleJavaScriptDialog, page.HandleJavaScriptDialogParams{Accept: false})
					return err
				}))
			}
		}
	}()
	return b
}

func (b *browser) url(p string) string { return b.base + p }

func (b *browser) dialogs() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.seen)
}

// do runs the steps, each page's within 10 s, and fails the test with
// where the browser is and what it shows if one fails.
func (b *browser) do(t *testing.T, what string, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	b.within(t, 10*time.Second, what, steps...)
}

func (b *browser) within(t *testing.T, d time.Duration, what string, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, d)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		dctx, dcancel := context.WithTimeout(b.ctx, 2*time.Second)
		defer dcancel()
		loc, _ := chromedp.Run(dctx, chromedp.Location())
		text, _ := chromedp.Run(dctx, chromedp.Text(chromedp.CSS("body")))
		t.Fatalf("%s: %v\nthe browser is at %s, showing:\n%s", what, err, loc, text)
	}
}

func (b *browser) location(t *testing.T) string {
	t.Helper()
	return read(t, b, chromedp.Location())
}

// text is what the first element sel matches shows, trimmed.
func (b *browser) text(t *testing.T, sel string) string {
	t.Helper()
	return strings.TrimSpace(read(t, b, chromedp.Text(chromedp.CSS(sel))))
}

func (b *browser) html(t *testing.T) string {
	t.Helper()
	return read(t, b, chromedp.OuterHTML(chromedp.CSS("html")))
}

func read[T any](t *testing.T, b *browser, a chromedp.Action[T]) T {
	t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 5*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, a)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// showsText checks that the page shows s as text, and holds no markup
// that came from data.
func (b *browser) showsText(t *testing.T, s string) {
	t.Helper()
	if text := b.text(t, "body"); !strings.Contains(text, s) {
		t.Errorf("the page does not show %q as text:\n%s", s, text)
	}
	b.inert(t)
}

// inert checks that every script of the page is a file of the console's,
// and that no element carries an event handler.
func (b *browser) inert(t *testing.T) {
	t.Helper()
	bad := read(t, b, chromedp.Evaluate[[]string](`[
		...[...document.scripts].filter(s => !s.src || new URL(s.src).pathname.indexOf("/console/static/") !== 0).map(s => "script: " + s.outerHTML),
		...[...document.querySelectorAll("[onerror], [onload], [onclick]")].map(e => "handler: " + e.outerHTML),
	]`))
	if len(bad) > 0 {
		t.Errorf("markup from data on the page: %q", bad)
	}
	if d := b.dialogs(); len(d) > 0 {
		t.Errorf("JavaScript dialogs opened: %q", d)
	}
}

// sessionCookie is the console's session cookie, which no script reads
// (it is HttpOnly): DevTools does.
func (b *browser) sessionCookie(t *testing.T) *http.Cookie {
	t.Helper()
	cookies := read(t, b, chromedp.Action[[]*network.Cookie](func(ctx context.Context, tg *chromedp.Target) ([]*network.Cookie, error) {
		r, err := cdp.Call(ctx, tg, network.GetCookies, network.GetCookiesParams{URLs: []string{b.url("/console/")}})
		return r.Cookies, err
	}))
	for _, c := range cookies {
		if c.Name == "kurier_console" {
			if !c.HTTPOnly || c.SameSite != network.CookieSameSiteStrict {
				t.Errorf("the session cookie %+v is not HttpOnly and SameSite=Strict", c)
			}
			return &http.Cookie{Name: c.Name, Value: c.Value}
		}
	}
	t.Fatalf("no session cookie among %d", len(cookies))
	return nil
}

// screenshotOf opens a page to take its screenshot, when screenshots are
// asked for.
func (b *browser) screenshotOf(t *testing.T, name, path string) {
	t.Helper()
	if b.shots == "" {
		return
	}
	b.do(t, "the page of screenshot "+name, chromedp.Navigate(b.url(path)), chromedp.WaitVisible(chromedp.CSS("h1")))
	b.screenshot(t, name)
}

// screenshot writes the browser's viewport as <dir>/<name>.png when
// KURIER_SCREENSHOTS=<dir> is set.
func (b *browser) screenshot(t *testing.T, name string) {
	t.Helper()
	if b.shots == "" {
		return
	}
	png := read(t, b, chromedp.CaptureScreenshot())
	if err := os.MkdirAll(b.shots, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(b.shots, name+".png"), png, 0o644); err != nil {
		t.Fatal(err)
	}
}

func subscription(t *testing.T, adm adminv1.AdminServiceClient, id string) *adminv1.Subscription {
	t.Helper()
	s, err := adm.GetSubscription(context.Background(), &adminv1.GetSubscriptionRequest{SubscriptionId: id})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// subscriptionOf finds an org's subscription of a system.
func subscriptionOf(t *testing.T, adm adminv1.AdminServiceClient, org, system string) *adminv1.Subscription {
	t.Helper()
	l, err := adm.ListSubscriptions(context.Background(), &adminv1.ListSubscriptionsRequest{OrgId: org})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range l.GetSubscriptions() {
		if s.GetSystem() == system {
			return s
		}
	}
	t.Fatalf("%s has no subscription of %s", org, system)
	return nil
}

// verifySigned checks a delivery's Standard Webhooks signature with secret.
func verifySigned(t *testing.T, h contract.Hit, secret string) {
	t.Helper()
	wh, err := standardwebhooks.NewWebhook(secret)
	if err != nil {
		t.Fatal(err)
	}
	if err := wh.Verify([]byte(h.Body), h.Header); err != nil {
		t.Fatalf("%s %s is not signed with the secret the console showed: %v (%s)", h.Method, h.Path, err, h.Header.Get("webhook-signature"))
	}
}
