# ssh entries as objects: { id, paths } is buildx's "id=path1,path2"
target "default" {
  ssh = [
    { id = "default" },
    { id = "github", paths = ["/keys/github", "/keys/github-2"] },
    "plain=/keys/plain",
  ]
}
