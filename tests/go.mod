module kurier.dev/tests

go 1.26.0

require (
	kurier.dev/proto v0.0.0
	kurier.dev/services v0.0.0
)

replace (
	kurier.dev/proto => ../proto
	kurier.dev/services => ../services
)
