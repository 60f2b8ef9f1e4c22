/**
 * Loads generated code whose runtime copy has another version; prints the
 * error the generated module throws at load time.
 */

try {
  await import("./other/gen-c/order/v1/order_nats.pb.js");
  console.log("loaded");
} catch (err) {
  console.log(`refused: ${err instanceof Error ? err.message : String(err)}`);
}
