package joinserver

// What the external tests (package joinserver_test) reach inside.
const (
	FailBurst          = failBurst
	NodePasswordSuffix = nodePasswordSuffix
	NodePasswordKey    = nodePasswordKey
)

// Checks are the turns of h's secret checks: a test that fills them makes
// every join wait.
func Checks(h *Handler) chan struct{} { return h.checks }
