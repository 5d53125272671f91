// Package contract holds the suites of Kurier's public APIs (ingest, the
// change feed, the pull queues, the address book and the admin API), each
// written once against a Target and run in-process, against the kurier
// binary and against the docker-compose deployment, so the three cannot
// disagree about what the APIs promise. A suite speaks only the public
// protocols (HTTP and the admin gRPC API) and makes its own organisations,
// so suites share a Target without seeing each other's data.
//
// It also holds the clients those suites use, for other tests to share:
// Do and Answer for any HTTP exchange, Queue for the ComNorm queue API,
// and Recorder and Receiver, a webhook receiver that keeps what it was
// sent and the client that reads it back.
package contract
