// Command receiver is the webhook receiver of the compose end-to-end test:
// contract.Recorder in a container of its own on the deployment's network,
// where dispatchers reach it by name; the test, outside that network,
// reads what arrived from GET /_received?from=<n> on the published port.
package main

import (
	"log"
	"net/http"

	"kurier.dev/services/contract"
)

func main() {
	log.Fatal(http.ListenAndServe(":8080", &contract.Recorder{}))
}
