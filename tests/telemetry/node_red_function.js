// Runs one Node-RED function node of a flow file on recorded MQTT messages, the way Node-RED does:
// the node's body gets msg, node, context, flow, global and env, and returns a message, an array
// (one entry per output) or null.
//
//   node node_red_function.js FLOW.json NODE_ID MESSAGES.jsonl   -> {"outputs": [...], "warnings": [...], "status": {...}}
//
// MESSAGES.jsonl: one {"topic": ..., "payload": <object>} per line (an mqtt-in node with datatype "json").
"use strict";
const fs = require("fs");

const [flowPath, nodeId, messagesPath] = process.argv.slice(2);
const flowNodes = JSON.parse(fs.readFileSync(flowPath, "utf8"));
const functionNode = flowNodes.find((n) => n.id === nodeId && n.type === "function");
if (!functionNode) {
    throw new Error("no function node " + nodeId + " in " + flowPath);
}
const store = () => {
    const values = {};
    return {get: (key) => values[key], set: (key, value) => { values[key] = value; }, keys: () => Object.keys(values)};
};
const warnings = [];
let lastStatus = null;
const node = {
    id: nodeId,
    warn: (m) => warnings.push(String(m)),
    error: (m) => warnings.push("error: " + String(m)),
    log: () => {},
    status: (s) => { lastStatus = s; },
    send: () => { throw new Error("node.send is not used by these recipes"); },
};
const body = new Function("msg", "node", "context", "flow", "global", "env", functionNode.func);
const [context, flowContext, globalContext] = [store(), store(), store()];
const outputs = fs.readFileSync(messagesPath, "utf8").split("\n").filter(Boolean).map((line) => {
    const received = JSON.parse(line);
    return body({topic: received.topic, payload: received.payload, qos: 1, retain: false},
                node, context, flowContext, globalContext, {get: () => undefined});
});
process.stdout.write(JSON.stringify({outputs, warnings, status: lastStatus}));
