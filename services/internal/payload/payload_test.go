package payload

import (
	"strings"
	"testing"
)

func TestRequestURL(t *testing.T) {
	for _, tc := range []struct {
		name string
		spec Spec
		typ  string
		want string
	}{
		{
			name: "plain",
			spec: Spec{URL: "https://erp.example.com/hook", Table: "Auftrag"},
			typ:  "project.created",
			want: "https://erp.example.com/hook?event=project.created&table=Auftrag&conditions=",
		},
		{
			name: "empty table and conditions are still sent",
			spec: Spec{URL: "https://erp.example.com/hook"},
			typ:  "customer.created",
			want: "https://erp.example.com/hook?event=customer.created&table=&conditions=",
		},
		{
			name: "existing query comes first, in order",
			spec: Spec{URL: "https://erp.example.com/hook?a=1&b=2", Table: "Kunde", Attributes: []Attr{{Name: "k", Value: "v"}}},
			typ:  "customer.created",
			want: "https://erp.example.com/hook?a=1&b=2&event=customer.created&table=Kunde&conditions=&k=v",
		},
		{
			name: "existing query keeps its escapes and repeated names",
			spec: Spec{URL: "https://erp.example.com/hook?b=2&a=x%20y&b=1&flag", Table: "T"},
			typ:  "a.b",
			want: "https://erp.example.com/hook?b=2&a=x%20y&b=1&flag&event=a.b&table=T&conditions=",
		},
		{
			name: "fragment is dropped",
			spec: Spec{URL: "https://erp.example.com/hook?a=1#top", Table: "T"},
			typ:  "a.b",
			want: "https://erp.example.com/hook?a=1&event=a.b&table=T&conditions=",
		},
		{
			name: "fragment without query is dropped",
			spec: Spec{URL: "http://erp.example.com/hook#x?y=1", Table: "T"},
			typ:  "a.b",
			want: "http://erp.example.com/hook?event=a.b&table=T&conditions=",
		},
		{
			name: "special characters in attributes and conditions",
			spec: Spec{
				URL:        "https://erp.example.com/hook",
				Table:      "Auftrag Positionen",
				Conditions: "Status = 'offen' & Betrag > 100",
				Attributes: []Attr{
					{Name: "mein key", Value: "a b&c=d+ü"},
					{Name: "a&b=c", Value: "100%"},
					{Name: "leer", Value: ""},
				},
			},
			typ:  "project.created",
			want: "https://erp.example.com/hook?event=project.created&table=Auftrag+Positionen&conditions=Status+%3D+%27offen%27+%26+Betrag+%3E+100&mein+key=a+b%26c%3Dd%2B%C3%BC&a%26b%3Dc=100%25&leer=",
		},
		{
			name: "bytes not allowed raw in a query are escaped in the existing query",
			spec: Spec{URL: "https://erp.example.com/hook?q=a b&n=ü&s='x'&h=<\"y\">&p=a+b"},
			typ:  "a.b",
			want: "https://erp.example.com/hook?q=a%20b&n=%C3%BC&s=%27x%27&h=%3C%22y%22%3E&p=a+b&event=a.b&table=&conditions=",
		},
		{
			name: "trailing ampersand gets no second one",
			spec: Spec{URL: "https://erp.example.com/hook?a=1&"},
			typ:  "a.b",
			want: "https://erp.example.com/hook?a=1&event=a.b&table=&conditions=",
		},
		{
			name: "empty query",
			spec: Spec{URL: "https://erp.example.com/hook?"},
			typ:  "a.b",
			want: "https://erp.example.com/hook?event=a.b&table=&conditions=",
		},
		{
			name: "no path, port, upper-case scheme and user info",
			spec: Spec{URL: "HTTP://user:pa%20ss@erp.example.com:8080", Table: "T"},
			typ:  "a.b",
			want: "http://user:pa%20ss@erp.example.com:8080?event=a.b&table=T&conditions=",
		},
		{
			name: "IPv6 host and escaped path",
			spec: Spec{URL: "http://[::1]:8080/a%2Fb/c d", Table: "T"},
			typ:  "a.b",
			want: "http://[::1]:8080/a%2Fb/c%20d?event=a.b&table=T&conditions=",
		},
		{
			name: "path bytes not allowed raw are escaped",
			spec: Spec{URL: "https://erp.example.com/ä/\"x\"/a%2Fb(1)"},
			typ:  "a.b",
			want: "https://erp.example.com/%C3%A4/%22x%22/a%2Fb(1)?event=a.b&table=&conditions=",
		},
		{
			name: "secret attributes are sent in clear",
			spec: Spec{URL: "https://erp.example.com/hook", Attributes: []Attr{{Name: "token", Value: "s3cr3t", Secret: true}}},
			typ:  "a.b",
			want: "https://erp.example.com/hook?event=a.b&table=&conditions=&token=s3cr3t",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := RequestURL(tc.spec, tc.typ)
			if err != nil {
				t.Fatalf("RequestURL: %v", err)
			}
			if got != tc.want {
				t.Errorf("RequestURL\n got %s\nwant %s", got, tc.want)
			}
		})
	}
}

func TestRequestURLErrors(t *testing.T) {
	for _, tc := range []struct {
		url, want string
	}{
		{"", "has no URL"},
		{"http://erp.example.com/%zz", "does not parse"},
		{"http://erp example.com/", "does not parse"},
		{"http://erp.example.com/\n", "does not parse"},
		{"ftp://erp.example.com/", "not http or https"},
		{"mailto:a@example.com", "not http or https"},
		{"/hook?a=1", "not http or https"},
		{"erp.example.com/hook", "not http or https"},
		{"https://user:hunter2@erp.example.com/%zz", "does not parse"},
		{"http:///hook", "has no host"},
		{"http://:8080/hook", "has no host"},
		{"https:hook", "has no host"},
	} {
		t.Run(tc.url, func(t *testing.T) {
			for _, f := range []func(Spec, string) (string, error){RequestURL, MaskedURL} {
				got, err := f(Spec{URL: tc.url}, "a.b")
				if err == nil || !strings.Contains(err.Error(), tc.want) {
					t.Errorf("got %q, %v; want an error saying %q", got, err, tc.want)
				}
				if tc.url != "" && strings.Contains(err.Error(), tc.url) || strings.Contains(err.Error(), "hunter2") {
					t.Errorf("error %q repeats the URL, which may hold secrets", err)
				}
			}
		})
	}
}

func TestMaskedURL(t *testing.T) {
	for _, tc := range []struct {
		name string
		spec Spec
		want string
	}{
		{
			name: "secret values masked, others kept",
			spec: Spec{
				URL:   "https://erp.example.com/hook?a=1",
				Table: "Auftrag",
				Attributes: []Attr{
					{Name: "mandant", Value: "7"},
					{Name: "api key", Value: "s3 cr&t", Secret: true},
					{Name: "leer", Value: "", Secret: true},
				},
			},
			want: "https://erp.example.com/hook?a=1&event=a.b&table=Auftrag&conditions=&mandant=7&api+key=***&leer=***",
		},
		{
			name: "password in user info masked",
			spec: Spec{URL: "https://user:hunter2@erp.example.com/hook#f"},
			want: "https://user:***@erp.example.com/hook?event=a.b&table=&conditions=",
		},
		{
			name: "user without password kept",
			spec: Spec{URL: "https://user@erp.example.com/hook"},
			want: "https://user@erp.example.com/hook?event=a.b&table=&conditions=",
		},
		{
			name: "nothing secret: same as RequestURL",
			spec: Spec{URL: "https://erp.example.com/hook", Attributes: []Attr{{Name: "k", Value: "v w"}}},
			want: "https://erp.example.com/hook?event=a.b&table=&conditions=&k=v+w",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := MaskedURL(tc.spec, "a.b")
			if err != nil {
				t.Fatalf("MaskedURL: %v", err)
			}
			if got != tc.want {
				t.Errorf("MaskedURL\n got %s\nwant %s", got, tc.want)
			}
		})
	}
}
