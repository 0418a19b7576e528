import { test, expect } from "@playwright/test";
import { graphReady } from "./graph";

// An OpenTelemetry profile sent as OTLP/JSON to POST /v1development/profiles, as the eBPF
// profiler's on-CPU profile is shaped (samples/count with a 10 ms cpu/nanoseconds period, a
// kernel frame, an unsymbolized native frame), then seen in the explorer with the totals it
// carried: 3 + 1 samples of 10 ms.

const APP = `otlp${Date.now() % 100000}`;
const strings = ["", "samples", "count", "cpu", "nanoseconds", "main", "work", "do_syscall_64",
  "/usr/lib/libc.so.6", "profile.frame.type", "kernel"];

test.beforeAll(async ({ request }) => {
  const now = BigInt(Date.now()) * 1_000_000n;
  const body = {
    resourceProfiles: [{
      resource: { attributes: [{ key: "service.name", value: { stringValue: APP } }] },
      scopeProfiles: [{
        profiles: [{
          sampleType: { typeStrindex: 1, unitStrindex: 2 },
          periodType: { typeStrindex: 3, unitStrindex: 4 },
          period: "10000000",
          timeUnixNano: (now - 5_000_000_000n).toString(),
          durationNano: "5000000000",
          samples: [
            { stackIndex: 1, values: ["3"] },
            { stackIndex: 2, timestampsUnixNano: [(now - 1_000_000_000n).toString()] },
          ],
        }],
      }],
    }],
    dictionary: {
      stringTable: strings,
      mappingTable: [{}, { filenameStrindex: 8 }],
      functionTable: [{}, { nameStrindex: 5 }, { nameStrindex: 6 }, { nameStrindex: 7 }],
      attributeTable: [{}, { keyStrindex: 9, value: { stringValue: "kernel" } }],
      locationTable: [
        {},
        { lines: [{ functionIndex: 1 }] },
        { lines: [{ functionIndex: 2 }] },
        { lines: [{ functionIndex: 3 }], attributeIndices: [1] },
        { mappingIndex: 1, address: "4660" },
      ],
      stackTable: [{}, { locationIndices: [2, 1] }, { locationIndices: [3, 4, 1] }],
    },
  };
  const response = await request.post("/v1development/profiles", { data: body });
  expect(response.status(), await response.text()).toBe(200);
  expect(await response.json()).toEqual({});
});

test("an OTLP profile shows in the explorer with its totals and frame kinds", async ({ page }) => {
  await page.goto(`/explore?query=${APP}.cpu`);
  await expect(page.locator(".summary")).toHaveText("40.00 ms in total");
  const names = page.locator("table.top-table tbody td.name");
  await expect(names.first()).toHaveText("main");
  for (const frame of ["work", "libc.so.6+0x1234", "do_syscall_64_[k]"]) {
    await expect(names.filter({ hasText: frame })).toHaveCount(1);
  }
  await graphReady(page);
});
