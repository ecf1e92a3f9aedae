// The package's entry for AssemblyScript imports (`import { ... } from "@essa/as"`).
export * from "./assembly/index";
