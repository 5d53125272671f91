package console

import (
	"bytes"
	"cmp"
	"encoding/xml"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	adminv1 "kurier.dev/proto/kurier/admin/v1"
)

// plotWindow is a plot's span: the API's window, drawn as Steps slots of
// Step each, the current one last, as the API sums its series.
type plotWindow struct {
	api   adminv1.StatsWindow
	Step  time.Duration
	Steps int
	// per names a slot, last the window, tick the form of a time on the axis.
	per, last, tick string
}

var plotWindows = map[string]plotWindow{
	"hour": {adminv1.StatsWindow_STATS_WINDOW_HOUR, time.Minute, 60, "minute", "last hour", "15:04"},
	"day":  {adminv1.StatsWindow_STATS_WINDOW_DAY, time.Hour, 24, "hour", "last day", "Jan 2 15:04"},
}

// slot answers which slot of the window ending now a bucket starting at t
// is in, and false for one outside it.
func (w plotWindow) slot(now, t time.Time) (int, bool) {
	from := now.UTC().Truncate(w.Step).Add(-time.Duration(w.Steps-1) * w.Step)
	if t.Before(from) {
		return 0, false
	}
	i := int(t.Sub(from) / w.Step)
	return i, i < w.Steps
}

// plotImage is a plot as a page shows it.
type plotImage struct {
	Src, Alt      string
	Width, Height int
}

// plotImages are the plots of an org, or of one of its subscriptions
// when sub is set, for the last hour and the last day.
func plotImages(org, sub string) []plotImage {
	var out []plotImage
	for _, win := range []string{"hour", "day"} {
		q := url.Values{"window": {win}}
		if sub != "" {
			q.Set("subscription", sub)
		}
		w := plotWindows[win]
		out = append(out,
			plotImage{Src: path("orgs", org, "plots", "deliveries.svg") + "?" + q.Encode(), Width: plotW, Height: plotH,
				Alt: "Delivery attempts per " + w.per + " by outcome, " + w.last},
			plotImage{Src: path("orgs", org, "plots", "latency.svg") + "?" + q.Encode(), Width: plotW, Height: plotH,
				Alt: "Latency p50 and p99 per " + w.per + ", " + w.last})
	}
	return out
}

// The plot's size and its frame: the area inside holds the data.
const (
	plotW, plotH                     = 640, 220
	padLeft, padRight, padTop, padBo = 56, 16, 30, 34
	areaW, areaH                     = plotW - padLeft - padRight, plotH - padTop - padBo
)

// Colours of the outcomes and the percentiles, as the console's CSS has them.
const (
	colGood, colBad, colLine, colMuted, colP50 = "#1b7f3b", "#b3261e", "#d9dde4", "#5d6675", "#1f5fbf"
)

func (c *Console) plotDeliveries(w http.ResponseWriter, r *http.Request, s session) {
	c.plot(w, r, s, drawDeliveries)
}

func (c *Console) plotLatency(w http.ResponseWriter, r *http.Request, s session) {
	c.plot(w, r, s, drawLatency)
}

// plot answers an SVG drawn from the series of the org's or, with
// subscription, of one of its subscriptions' delivery statistics.
func (c *Console) plot(w http.ResponseWriter, r *http.Request, s session, draw func(of string, win plotWindow, now time.Time, series []*adminv1.StatsBucket) []byte) {
	q := r.URL.Query()
	name := q.Get("window")
	if name == "" {
		name = "hour"
	}
	win, ok := plotWindows[name]
	if !ok {
		c.badInput(w, r, s, &badField{"window", "must be hour or day"})
		return
	}
	org := r.PathValue("org")
	ctx := call(r, s)
	of := org
	var stats *adminv1.DeliveryStats
	var err error
	if id := q.Get("subscription"); id != "" {
		var sub *adminv1.Subscription
		if sub, err = c.orgSub(r, s, org, id); err == nil {
			of = org + " · " + cmp.Or(sub.GetName(), id)
			stats, err = c.api.GetSubscriptionStats(ctx, &adminv1.GetSubscriptionStatsRequest{SubscriptionId: id, Window: win.api})
		}
	} else {
		stats, err = c.api.GetOrgStats(ctx, &adminv1.GetOrgStatsRequest{OrgId: org, Window: win.api})
	}
	if err != nil {
		c.apiFail(w, r, s, err)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "image/svg+xml")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	// Opened by itself, an SVG is a document: it may run nothing.
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'")
	_, _ = w.Write(draw(of, win, time.Now(), stats.GetSeries()))
}

// svg writes a plot; every text and attribute value it is given is
// escaped.
type svg struct{ b bytes.Buffer }

func esc(s string) string {
	var b bytes.Buffer
	_ = xml.EscapeText(&b, []byte(s))
	return b.String()
}

func (g *svg) f(format string, args ...any) { fmt.Fprintf(&g.b, format, args...) }

func (g *svg) text(x, y float64, anchor, fill, s string) {
	g.f(`<text x="%.1f" y="%.1f" text-anchor="%s" fill="%s">%s</text>`+"\n", x, y, anchor, fill, esc(s))
}

// frame starts a plot: its title, the y axis up to max with its unit, and
// the window's times along the x axis.
func (g *svg) frame(title, unit string, max float64, win plotWindow, now time.Time) {
	g.f(`<svg xmlns="http://www.w3.org/2000/svg" class="plot" viewBox="0 0 %d %d" width="%d" height="%d" role="img" aria-label="%s" font-family="system-ui, sans-serif" font-size="11">`+"\n",
		plotW, plotH, plotW, plotH, esc(title))
	g.f("<title>%s</title>\n", esc(title))
	g.f(`<rect x="0" y="0" width="%d" height="%d" fill="#fff"/>`+"\n", plotW, plotH)
	g.text(padLeft, 16, "start", "#1d2330", title)
	for i := range 3 {
		v := max * float64(i) / 2
		y := padTop + areaH - areaH*float64(i)/2
		g.f(`<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="%s"/>`+"\n", padLeft, y, padLeft+areaW, y, colLine)
		g.text(padLeft-6, y+4, "end", colMuted, strconv.FormatFloat(v, 'f', -1, 64))
	}
	g.f(`<text class="unit" x="14" y="%d" text-anchor="middle" fill="%s" transform="rotate(-90 14 %d)">%s</text>`+"\n",
		padTop+areaH/2, colMuted, padTop+areaH/2, esc(unit))
	from := now.UTC().Truncate(win.Step).Add(-time.Duration(win.Steps-1) * win.Step)
	for i, at := range []int{0, win.Steps / 2, win.Steps} {
		anchor := [...]string{"start", "middle", "end"}[i]
		g.text(padLeft+float64(areaW*at)/float64(win.Steps), plotH-padBo+16, anchor, colMuted,
			from.Add(time.Duration(at)*win.Step).Format(win.tick))
	}
	g.text(padLeft+areaW, plotH-4, "end", colMuted, "UTC, per "+win.per)
}

// legend names the colours, at the top right: pairs of a name and its
// colour.
func (g *svg) legend(pairs ...string) {
	// About the width of the font's characters: the legend need not fit
	// to the pixel.
	width := func(name string) float64 { return 14 + 6.5*float64(len(name)) + 14 }
	x := float64(padLeft + areaW)
	for i := 0; i < len(pairs); i += 2 {
		x -= width(pairs[i])
	}
	for i := 0; i < len(pairs); i += 2 {
		g.f(`<rect x="%.1f" y="7" width="10" height="10" fill="%s"/>`+"\n", x, pairs[i+1])
		g.text(x+14, 16, "start", colMuted, pairs[i])
		x += width(pairs[i])
	}
}

// empty notes a window without attempts.
func (g *svg) empty() {
	g.f(`<text class="empty" x="%d" y="%d" text-anchor="middle" fill="%s" font-size="13">no deliveries</text>`+"\n",
		padLeft+areaW/2, padTop+areaH/2, colMuted)
}

// niceMax is the smallest 1, 2 or 5 times a power of ten at least v, so
// the axis is labelled with round figures.
func niceMax(v float64) float64 {
	if v <= 0 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*p >= v {
			return m * p
		}
	}
	return 10 * p
}

// drawDeliveries draws the attempts per slot as bars, the successes at the
// bottom and the failures stacked on them.
func drawDeliveries(of string, win plotWindow, now time.Time, series []*adminv1.StatsBucket) []byte {
	var top uint64
	for _, b := range series {
		top = max(top, b.GetAttempts())
	}
	// At least 2, so that no axis is labelled with half an attempt.
	ymax := max(niceMax(float64(top)), 2)
	var g svg
	g.frame("Deliveries per "+win.per+", "+win.last+": "+of, "attempts", ymax, win, now)
	g.legend("delivered", colGood, "failed", colBad)
	if top == 0 {
		g.empty()
	}
	slotW := float64(areaW) / float64(win.Steps)
	for _, b := range series {
		i, ok := win.slot(now, b.GetStart().AsTime())
		if !ok || b.GetAttempts() == 0 {
			continue
		}
		x := padLeft + slotW*float64(i) + slotW*0.1
		base := float64(padTop + areaH)
		at := b.GetStart().AsTime().UTC().Format(time.RFC3339)
		for _, part := range []struct {
			class, fill string
			n           uint64
		}{{"delivered", colGood, b.GetSuccesses()}, {"failed", colBad, b.GetFailures()}} {
			if part.n == 0 {
				continue
			}
			h := areaH * float64(part.n) / ymax
			base -= h
			g.f(`<rect class="%s" data-start="%s" data-count="%d" x="%.2f" y="%.2f" width="%.2f" height="%.2f" fill="%s"><title>%s: %d %s</title></rect>`+"\n",
				part.class, at, part.n, x, base, slotW*0.8, h, part.fill, esc(b.GetStart().AsTime().UTC().Format(win.tick)), part.n, part.class)
		}
	}
	g.f("</svg>\n")
	return g.b.Bytes()
}

// drawLatency draws the p50 and p99 latency per slot as two lines, over
// the slots with answered attempts.
func drawLatency(of string, win plotWindow, now time.Time, series []*adminv1.StatsBucket) []byte {
	lines := []struct {
		class, colour string
		of            func(*adminv1.StatsBucket) *durationpb.Duration
	}{
		{"p50", colP50, (*adminv1.StatsBucket).GetLatencyP50},
		{"p99", colBad, (*adminv1.StatsBucket).GetLatencyP99},
	}
	var top float64
	for _, b := range series {
		for _, l := range lines {
			top = max(top, ms(l.of(b)))
		}
	}
	ymax := niceMax(top)
	var g svg
	g.frame("Latency per "+win.per+", "+win.last+": "+of, "ms", ymax, win, now)
	g.legend("p50", colP50, "p99", colBad)
	if top == 0 {
		g.empty()
	}
	slotW := float64(areaW) / float64(win.Steps)
	for _, l := range lines {
		var points, dots bytes.Buffer
		for _, b := range series {
			i, ok := win.slot(now, b.GetStart().AsTime())
			if !ok || l.of(b) == nil {
				continue
			}
			v := ms(l.of(b))
			x, y := padLeft+slotW*(float64(i)+0.5), padTop+areaH-areaH*v/ymax
			at := b.GetStart().AsTime().UTC()
			fmt.Fprintf(&points, "%.2f,%.2f ", x, y)
			fmt.Fprintf(&dots, `<circle class="%s" data-start="%s" data-ms="%s" cx="%.2f" cy="%.2f" r="2.5" fill="%s"><title>%s: %s %s ms</title></circle>`+"\n",
				l.class, at.Format(time.RFC3339), strconv.FormatFloat(v, 'f', -1, 64), x, y, l.colour,
				esc(at.Format(win.tick)), l.class, strconv.FormatFloat(v, 'f', 1, 64))
		}
		if points.Len() > 0 {
			g.f(`<polyline class="%s" points="%s" fill="none" stroke="%s" stroke-width="1.5"/>`+"\n", l.class, bytes.TrimSpace(points.Bytes()), l.colour)
			g.b.Write(dots.Bytes())
		}
	}
	g.f("</svg>\n")
	return g.b.Bytes()
}

// ms is a latency in milliseconds; 0 for none.
func ms(d *durationpb.Duration) float64 {
	return float64(d.AsDuration()) / float64(time.Millisecond)
}
