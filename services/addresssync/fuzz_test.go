package addresssync

import (
	"errors"
	"strings"
	"testing"

	"kurier.dev/services/internal/web"
)

// FuzzDecode: a sync body is taken with every person valid and each
// externalDbId once, or refused with a 400 naming the field (and, for a
// person, its index in the list).
func FuzzDecode(f *testing.F) {
	for _, s := range []string{
		`{"source":"x","personList":[]}`,
		`{"source":"x","personList":[{"externalDbId":"1","firstName":"Ada","mobil":"004917612345678"}]}`,
		`{"personList":[{"externalDbId":"1","aPagerProFieldMode":"TOKEN","aPagerPro":"a@b.de"}]}`,
		`{"personList":[{"externalDbId":"1"},{"externalDbId":"1"}]}`,
		`{"personList":[{"externalDbId":"1","osGroups":["a",""]}]}`,
		`{"personList":[{"externalDbId":"1"},"x"]}`,
		`{"personList":{}}`, `[]`, `{"source":1}`, "{\"personList\":[{\"externalDbId\":\"a\\u0000\"}]}",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		_, list, err := decode(body)
		if err != nil {
			var we *web.Error
			if !errors.As(err, &we) || we.Status != 400 || we.Field == "" {
				t.Fatalf("%q: %v is not a 400 naming a field", body, err)
			}
			if we.Index != nil && !strings.HasPrefix(we.Field, "personList[") {
				t.Fatalf("%q: person error on field %q", body, we.Field)
			}
			return
		}
		seen := map[string]bool{}
		for i := range list {
			if e := list[i].Check(); e != nil {
				t.Fatalf("%q: person %d taken but invalid: %v", body, i, e)
			}
			if seen[list[i].ExternalDbID] {
				t.Fatalf("%q: %s taken twice", body, list[i].ExternalDbID)
			}
			seen[list[i].ExternalDbID] = true
		}
	})
}
