// Package webhook signs outgoing requests the Standard Webhooks way, so any
// receiver can verify them with the reference libraries.
package webhook

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
)

// Sign sets webhook-id, webhook-timestamp and webhook-signature on h for
// body. With several secrets (while one is being rotated out) it sends a
// signature for each, space-separated, as the specification allows.
func Sign(h http.Header, id string, ts time.Time, body []byte, secrets ...string) error {
	sigs := make([]string, 0, len(secrets))
	for _, secret := range secrets {
		wh, err := standardwebhooks.NewWebhook(secret)
		if err != nil {
			return fmt.Errorf("signing secret: %w", err)
		}
		sig, err := wh.Sign(id, ts, body)
		if err != nil {
			return fmt.Errorf("sign: %w", err)
		}
		sigs = append(sigs, sig)
	}
	h.Set(standardwebhooks.HeaderWebhookID, id)
	h.Set(standardwebhooks.HeaderWebhookTimestamp, strconv.FormatInt(ts.Unix(), 10))
	h.Set(standardwebhooks.HeaderWebhookSignature, strings.Join(sigs, " "))
	return nil
}
