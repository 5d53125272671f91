package tests

import (
	"encoding/json"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// dashboardMetric finds the metric names in a PromQL expression: Kurier's
// all begin kurier_.
var dashboardMetric = regexp.MustCompile(`\bkurier_[a-z0-9_]+`)

// checkDashboard checks that every metric the Grafana dashboard in
// deploy/grafana queries is a family of the scrape, or a histogram's
// series (_bucket, _sum, _count) of one, so that no panel stays empty for
// a metric that was renamed or never existed.
func checkDashboard(t *testing.T, scrape metricFamilies) {
	t.Helper()
	b, err := os.ReadFile("../deploy/grafana/kurier.json")
	if err != nil {
		t.Fatal(err)
	}
	type panel struct {
		Title   string
		Panels  []panel // a row's, when collapsed
		Targets []struct{ Expr string }
	}
	var d struct{ Panels []panel }
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("deploy/grafana/kurier.json: %v", err)
	}
	exprs := 0
	var walk func([]panel)
	walk = func(ps []panel) {
		for _, p := range ps {
			walk(p.Panels)
			for _, tg := range p.Targets {
				exprs++
				names := dashboardMetric.FindAllString(tg.Expr, -1)
				if len(names) == 0 {
					t.Errorf("panel %q: %q queries no kurier_ metric", p.Title, tg.Expr)
				}
				for _, n := range names {
					if !scraped(scrape, n) {
						t.Errorf("panel %q queries %s, which Kurier does not register", p.Title, n)
					}
				}
			}
		}
	}
	walk(d.Panels)
	if exprs == 0 {
		t.Fatal("the dashboard has no queries")
	}
}

// scraped tells whether name is a family of the scrape or a histogram's series.
func scraped(scrape metricFamilies, name string) bool {
	if scrape[name] != nil {
		return true
	}
	for suffix, types := range map[string][]string{"_bucket": {"histogram"}, "_sum": {"histogram", "summary"}, "_count": {"histogram", "summary"}} {
		if base, ok := strings.CutSuffix(name, suffix); ok && scrape[base] != nil && slices.Contains(types, scrape[base].typ) {
			return true
		}
	}
	return false
}
