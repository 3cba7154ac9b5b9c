// Package e2e holds meshnode's real-kernel scenarios: real coordinator and
// node binaries with real TUN devices, in network namespaces behind NAT
// routers built with nftables (package netlab). They need root and run with
// `make e2e` (and the NAT-pair matrix with `make natmatrix`), which build
// bin/meshnode first and set MESHNODE_E2E=1; elsewhere they skip, saying why.
//
// Environment:
//
//	MESHNODE_E2E=1            run the scenarios (else they skip)
//	MESHNODE_BIN=PATH         the binary under test (default ../bin/meshnode)
//	MESHNODE_UNFILTERED_BIN=PATH  the test build whose filter passes what it
//	                          sends (default ../bin/meshnode-unfiltered-sender)
//	MESHNODE_NATMATRIX=PATH   also write the matrix as Markdown to PATH
//	MESHNODE_E2E_KEEP=1       keep the lab directory (logs, state) after a run
package e2e
