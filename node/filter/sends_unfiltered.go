//go:build meshnode_unfiltered_sender

package filter

// SendsUnfiltered turns the outbound check off in a binary built with
// `-tags meshnode_unfiltered_sender` (make e2e builds
// bin/meshnode-unfiltered-sender so). It exists only so that the
// real-kernel lab can run a sender that skips its own filter, as a
// modified meshnode would, and prove that the receiving node's filter
// still drops what the policy denies. Default builds use
// sends_filtered.go.
const SendsUnfiltered = true
