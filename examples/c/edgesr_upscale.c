/* Upscale an 8-bit binary PPM (P6, RGB) or PGM (P5, grey) through libedgesr; write the result
 * in the same format.
 *
 *   edgesr_upscale MODEL IN.ppm OUT.ppm ["tile=256;overlap=32;..."]
 *
 * MODEL: an ONNX file from `edgesr export` or an OpenVINO IR from `edgesr build`. Errors go to
 * stderr with libedgesr's message; the exit status is 1.
 */
#include <stdio.h>
#include <stdlib.h>

#include <edgesr.h>

static int skip_space_and_comments(FILE *f) {
    int c;
    while ((c = fgetc(f)) != EOF) {
        if (c == '#') {
            while ((c = fgetc(f)) != EOF && c != '\n') {}
        } else if (c != ' ' && c != '\t' && c != '\n' && c != '\r') {
            return ungetc(c, f);
        }
    }
    return EOF;
}

/* Read a P5/P6 file with maxval 255; return the pixels (free them) or NULL. */
static uint8_t *read_pnm(const char *path, int *width, int *height, int *channels) {
    FILE *f = fopen(path, "rb");
    char magic[3] = {0};
    int maxval = 0;
    uint8_t *pixels = NULL;
    if (!f) return NULL;
    if (fread(magic, 1, 2, f) == 2 && (magic[1] == '5' || magic[1] == '6') && magic[0] == 'P' &&
        skip_space_and_comments(f) != EOF && fscanf(f, "%d", width) == 1 &&
        skip_space_and_comments(f) != EOF && fscanf(f, "%d", height) == 1 &&
        skip_space_and_comments(f) != EOF && fscanf(f, "%d", &maxval) == 1 && maxval == 255 &&
        fgetc(f) != EOF && *width > 0 && *height > 0) {
        const size_t size = (size_t)*width * *height * (*channels = magic[1] == '6' ? 3 : 1);
        pixels = malloc(size);
        if (pixels && fread(pixels, 1, size, f) != size) {
            free(pixels);
            pixels = NULL;
        }
    }
    fclose(f);
    return pixels;
}

static int write_pnm(const char *path, const uint8_t *pixels, int width, int height,
                     int channels) {
    FILE *f = fopen(path, "wb");
    const size_t size = (size_t)width * height * channels;
    int ok;
    if (!f) return 0;
    ok = fprintf(f, "P%c\n%d %d\n255\n", channels == 3 ? '6' : '5', width, height) > 0 &&
         fwrite(pixels, 1, size, f) == size;
    return fclose(f) == 0 && ok;
}

int main(int argc, char **argv) {
    edgesr_session *session = NULL;
    int width, height, channels, scale, status;
    uint8_t *in, *out;
    if (argc < 4 || argc > 5) {
        fprintf(stderr, "usage: %s MODEL IN.ppm OUT.ppm [OPTIONS]\n", argv[0]);
        return 2;
    }
    in = read_pnm(argv[2], &width, &height, &channels);
    if (!in) {
        fprintf(stderr, "%s: not an 8-bit binary PPM (P6) or PGM (P5)\n", argv[2]);
        return 1;
    }
    status = edgesr_session_create(argv[1], argc == 5 ? argv[4] : NULL, &session);
    if (status != EDGESR_SUCCESS) {
        fprintf(stderr, "libedgesr: %s\n", edgesr_last_error(NULL));
        free(in);
        return 1;
    }
    scale = edgesr_session_scale(session);
    out = malloc((size_t)width * scale * height * scale * channels);
    status = out ? edgesr_upscale_u8(session, in, width, height, channels,
                                     (size_t)width * channels, out,
                                     (size_t)width * scale * channels)
                 : EDGESR_ERROR_MEMORY;
    if (status != EDGESR_SUCCESS)
        fprintf(stderr, "libedgesr: %s\n", out ? edgesr_last_error(session) : "out of memory");
    else if (!write_pnm(argv[3], out, width * scale, height * scale, channels))
        status = -1, fprintf(stderr, "%s: cannot write it\n", argv[3]);
    else
        printf("%s: %dx%d -> %dx%d (x%d, libedgesr %s)\n", argv[3], width, height,
               width * scale, height * scale, scale, edgesr_version());
    edgesr_session_destroy(session);
    free(in);
    free(out);
    return status == EDGESR_SUCCESS ? 0 : 1;
}
