// Hardhat 2 configuration. The package is ESM, so this file is CommonJS (.cjs).
// Compilation is offline: the solc compiler comes from the `solc` npm package (soljson.js), never a
// download. Its version must equal the configured compiler version below.
// `npm start` compiles first (prestart): no telemetry question for a newcomer at a terminal (consent
// stays unset, so nothing is sent).
process.env.HARDHAT_DISABLE_TELEMETRY_PROMPT ??= 'true';
const { subtask } = require('hardhat/config');
const { TASK_COMPILE_SOLIDITY_GET_SOLC_BUILD } = require('hardhat/builtin-tasks/task-names');

const SOLC_VERSION = '0.8.28';

subtask(TASK_COMPILE_SOLIDITY_GET_SOLC_BUILD, async ({ solcVersion }, _hre, runSuper) => {
  if (solcVersion !== SOLC_VERSION) return runSuper();
  const solc = require('solc');
  const longVersion = solc.version(); // e.g. 0.8.28+commit.7893614a.Emscripten.clang
  if (!longVersion.startsWith(`${SOLC_VERSION}+`)) {
    throw new Error(`the solc npm package is ${longVersion}, hardhat.config.cjs expects ${SOLC_VERSION}`);
  }
  return { compilerPath: require.resolve('solc/soljson.js'), isSolcJs: true, version: SOLC_VERSION, longVersion };
});

/** @type {import('hardhat/config').HardhatUserConfig} */
module.exports = {
  solidity: {
    compilers: [
      {
        version: SOLC_VERSION,
        settings: {
          optimizer: { enabled: true, runs: 10000 },
          evmVersion: 'cancun',
          viaIR: true,
        },
      },
    ],
    // CreditLedger (the next ledger) is optimised for size so that it stays under the 24 KiB code
    // limit (EIP-170); its settlement hot path is storage- and log-bound, so this costs little gas.
    // (Hardhat 2 reads `overrides` only in this `compilers` form.)
    overrides: {
      'contracts/CreditLedger.sol': {
        version: SOLC_VERSION,
        settings: { optimizer: { enabled: true, runs: 200 }, evmVersion: 'cancun', viaIR: true },
      },
    },
  },
  paths: {
    sources: './contracts',
    artifacts: './artifacts',
    cache: './cache',
    tests: './test/contracts',
  },
};
