//go:build !meshnode_unfiltered_sender

package filter

// SendsUnfiltered is false in every ordinary build: the node filters what
// it sends as well as what it receives (sends_unfiltered.go says when it
// is not).
const SendsUnfiltered = false
