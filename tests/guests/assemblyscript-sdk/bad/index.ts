// Functions the transform must refuse, each with one line naming it.
class Point {
  x: i32 = 0;
}

@essa
export function narrow(n: usize): u64 {
  return <u64>n;
}

@essa
export function point(p: Point): i32 {
  return p.x;
}

@essa("not a name")
export function spaced(): void {}
