// Builds dist/ once so end-to-end suites run the sidecar and CLI exactly as `npm start` / `npx fortary-authz` do.
// The build script also marks the entry points current, so the CLI under test never rebuilds mid-run.
const { buildIfNeeded } = require('../../scripts/build-if-needed.js');

module.exports = async () => {
  if (buildIfNeeded({ force: true }) !== 0) throw new Error('tsc -p tsconfig.build.json failed');
};
