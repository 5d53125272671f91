// Package compose tests the deployment of docker-compose.yml end to end:
// the real images, a three-node NATS JetStream cluster and every service
// replicated, under a steady flow of events while a NATS node and a
// dispatcher replica are lost. It needs Docker and the images of `make
// images`, so it is behind the build tag "compose": `make compose-e2e`
// builds the images and runs it.
package compose
