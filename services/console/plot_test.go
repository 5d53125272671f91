package console

import (
	"bytes"
	"cmp"
	"context"
	"encoding/xml"
	"fmt"
	"io"
	"math"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	adminv1 "kurier.dev/proto/kurier/admin/v1"
	"kurier.dev/services/bus"
	"kurier.dev/services/internal/stats"
)

// rollup stores a minute's attempts of org's subscription sub, as the
// dispatcher does: ok successes taking took each, and failed answered 5xx
// taking twice as long.
func (e *env) rollup(t *testing.T, org, sub string, start time.Time, ok, failed int, took time.Duration) {
	t.Helper()
	r := stats.Rollup{Start: start}
	for range ok {
		r.Add(stats.Success, start, took)
	}
	for range failed {
		r.Add(stats.Server, start, 2*took)
	}
	m, err := stats.Message(org, sub, bus.StatsMinute, &r, fmt.Sprint(org, sub, start.Unix()))
	if err == nil {
		_, err = e.conn.JS.PublishMsg(context.Background(), m)
	}
	if err != nil {
		t.Fatal(err)
	}
}

// node is an SVG element, as encoding/xml parses it.
type node struct {
	XMLName xml.Name
	Attrs   []xml.Attr `xml:",any,attr"`
	Text    string     `xml:",chardata"`
	Nodes   []node     `xml:",any"`
}

func (n node) attr(name string) string {
	for _, a := range n.Attrs {
		if a.Name.Local == name {
			return a.Value
		}
	}
	return ""
}

func (n node) num(t *testing.T, name string) float64 {
	t.Helper()
	v, err := strconv.ParseFloat(n.attr(name), 64)
	if err != nil {
		t.Fatalf("<%s %s=%q>: %v", n.XMLName.Local, name, n.attr(name), err)
	}
	return v
}

// all answers the elements named name, in document order.
func (n node) all(name string) []node {
	var out []node
	for _, c := range n.Nodes {
		if c.XMLName.Local == name {
			out = append(out, c)
		}
		out = append(out, c.all(name)...)
	}
	return out
}

// texts answers every text in the document.
func (n node) texts() string {
	var b strings.Builder
	b.WriteString(n.Text)
	for _, c := range n.Nodes {
		b.WriteString(c.texts())
	}
	return b.String()
}

// plot gets a plot and parses it.
func (e *env) plot(t *testing.T, p string) (node, string) {
	t.Helper()
	resp, err := e.client.Get(e.url + p)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "image/svg+xml" || resp.Header.Get("Cache-Control") != "no-store" {
		t.Fatalf("%s: %d %v\n%s", p, resp.StatusCode, resp.Header, body)
	}
	var root node
	d := xml.NewDecoder(bytes.NewReader(body))
	d.Strict = true
	if err := d.Decode(&root); err != nil || root.XMLName.Local != "svg" || root.XMLName.Space != "http://www.w3.org/2000/svg" {
		t.Fatalf("%s is no SVG (%v):\n%s", p, err, body)
	}
	return root, string(body)
}

func near(a, b float64) bool { return math.Abs(a-b) < 0.02 }

// TestPlots: the deliveries plot's bars and the latency plot's points are
// the API's series, placed on their minute or hour; an empty window says
// so; texts are escaped; a subscription of another org is not found.
func TestPlots(t *testing.T) {
	e := start(t)
	sub := payloadSub(t, e, "acme", hostile)
	quiet := payloadSub(t, e, "acme", "Quiet")
	other := payloadSub(t, e, "other", "Other")
	now := time.Now().UTC().Truncate(time.Minute)
	e.rollup(t, "acme", sub, now.Add(-10*time.Minute), 3, 1, 20*time.Millisecond)
	e.rollup(t, "acme", sub, now, 8, 0, 5*time.Millisecond)
	e.rollup(t, "other", other, now, 50, 50, time.Second)
	e.signIn(t)
	ctx := callToken(context.Background())

	for _, c := range []struct {
		query string
		get   func() (*adminv1.DeliveryStats, error)
	}{
		{"window=hour", func() (*adminv1.DeliveryStats, error) {
			return e.api.GetOrgStats(ctx, &adminv1.GetOrgStatsRequest{OrgId: "acme", Window: adminv1.StatsWindow_STATS_WINDOW_HOUR})
		}},
		{"window=day&subscription=" + sub, func() (*adminv1.DeliveryStats, error) {
			return e.api.GetSubscriptionStats(ctx, &adminv1.GetSubscriptionStatsRequest{SubscriptionId: sub, Window: adminv1.StatsWindow_STATS_WINDOW_DAY})
		}},
	} {
		st, err := c.get()
		if err != nil {
			t.Fatal(err)
		}
		series := st.GetSeries()
		win := plotWindows["hour"]
		if strings.HasPrefix(c.query, "window=day") {
			win = plotWindows["day"]
		}
		if len(series) == 0 {
			t.Fatalf("%s: no series to plot", c.query)
		}

		svg, body := e.plot(t, "/console/orgs/acme/plots/deliveries.svg?"+c.query)
		if strings.Contains(body, "<script") || strings.Contains(svg.texts(), "no deliveries") {
			t.Errorf("%s:\n%s", c.query, body)
		}
		var top uint64
		for _, b := range series {
			top = max(top, b.GetAttempts())
		}
		// One scale for all bars, the highest taking up most of the height.
		var bars []node
		for _, r := range svg.all("rect") {
			if r.attr("class") != "" {
				bars = append(bars, r)
			}
		}
		var got, want []string
		scale := 0.0
		base := map[string]float64{} // the top of each slot's stack so far
		for _, r := range bars {
			at := r.attr("data-start")
			if b, ok := base[at]; !near(r.num(t, "y")+r.num(t, "height"), cmp.Or(b, padTop+areaH)) || (ok && r.attr("class") != "failed") {
				t.Errorf("%s: bar %s %s is not on the axis or, failures, on the successes", c.query, at, r.attr("class"))
			}
			base[at] = r.num(t, "y")
			got = append(got, fmt.Sprintf("%s %s %s", r.attr("data-start"), r.attr("class"), r.attr("data-count")))
			n := r.num(t, "data-count")
			if scale == 0 {
				scale = r.num(t, "height") / n
			}
			if !near(r.num(t, "height"), n*scale) {
				t.Errorf("%s: bar %s %s is %v high, want %v", c.query, r.attr("data-start"), r.attr("class"), r.num(t, "height"), n*scale)
			}
		}
		if h := float64(top) * scale; h > areaH+0.01 || h < areaH/2.5 {
			t.Errorf("%s: the highest bar is %v of %d high", c.query, h, areaH)
		}
		for _, b := range series {
			at := b.GetStart().AsTime().UTC().Format(time.RFC3339)
			want = append(want, fmt.Sprintf("%s delivered %d", at, b.GetSuccesses()))
			if b.GetFailures() > 0 {
				want = append(want, fmt.Sprintf("%s failed %d", at, b.GetFailures()))
			}
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("%s: bars %v, want %v", c.query, got, want)
		}
		// The last bucket is the current one: its bar is the rightmost slot.
		last := bars[len(bars)-1]
		if slotW := float64(areaW) / float64(win.Steps); !near(last.num(t, "x"), padLeft+slotW*float64(win.Steps-1)+slotW*0.1) {
			t.Errorf("%s: the current bucket's bar at x=%v", c.query, last.num(t, "x"))
		}

		svg, body = e.plot(t, "/console/orgs/acme/plots/latency.svg?"+c.query)
		if strings.Contains(body, "<script") || !strings.Contains(svg.texts(), "ms") {
			t.Errorf("%s latency:\n%s", c.query, body)
		}
		got, want = nil, nil
		for _, p := range svg.all("circle") {
			got = append(got, p.attr("class")+" "+p.attr("data-start")+" "+p.attr("data-ms"))
		}
		for _, l := range []string{"p50", "p99"} {
			for _, b := range series {
				d := b.GetLatencyP50()
				if l == "p99" {
					d = b.GetLatencyP99()
				}
				want = append(want, l+" "+b.GetStart().AsTime().UTC().Format(time.RFC3339)+" "+strconv.FormatFloat(ms(d), 'f', -1, 64))
			}
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("%s: points %v, want %v", c.query, got, want)
		}
		for _, line := range svg.all("polyline") {
			if n := len(strings.Fields(line.attr("points"))); n != len(series) {
				t.Errorf("%s: line %s has %d points, want %d", c.query, line.attr("class"), n, len(series))
			}
		}
	}

	// The subscription's name is text in the plot.
	svg, _ := e.plot(t, "/console/orgs/acme/plots/deliveries.svg?subscription="+sub)
	if !strings.Contains(svg.texts(), hostile) || len(svg.all("script")) != 0 {
		t.Errorf("the name is not text: %q", svg.texts())
	}
	// An empty window says so.
	for _, kind := range []string{"deliveries", "latency"} {
		svg, _ := e.plot(t, "/console/orgs/acme/plots/"+kind+".svg?window=day&subscription="+quiet)
		if !strings.Contains(svg.texts(), "no deliveries") || len(svg.all("circle"))+len(svg.all("polyline")) != 0 {
			t.Errorf("%s of a quiet subscription: %q", kind, svg.texts())
		}
	}

	for p, want := range map[string]int{
		"deliveries.svg?subscription=" + other: http.StatusNotFound,
		"latency.svg?subscription=" + other:    http.StatusNotFound,
		"latency.svg?window=week":              http.StatusBadRequest,
	} {
		if code, _, _ := e.get(t, "/console/orgs/acme/plots/"+p); code != want {
			t.Errorf("%s: %d, want %d", p, code, want)
		}
	}
	if code, _, _ := e.get(t, "/console/orgs/nope/plots/latency.svg"); code != http.StatusNotFound {
		t.Errorf("plot of no org: %d", code)
	}
}
